//! The filter-rule AST, its validation ([`parse_filter`]) and a direct
//! evaluator over `serde_json::Value` that explains its verdict ([`eval`]).
//!
//! Field lookup: a field's input is the set of *hits* of its path.
//! It is absent when there is no hit, null when every hit is JSON `null`, and otherwise present
//! and not null; candidates are the scalars of all hits, arrays flattened.

pub mod eval;
mod validate;

use crate::number::Num;
pub use validate::parse_filter;

/// The 18 filter operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    StringIn,
    StringNotIn,
    StringStartsWith,
    StringNotStartsWith,
    StringEndsWith,
    StringNotEndsWith,
    NumberIn,
    NumberNotIn,
    NumberLessThan,
    NumberNotLessThan,
    NumberGreaterThan,
    NumberNotGreaterThan,
    NumberInRange,
    NumberNotInRange,
    IsNull,
    IsNotNull,
    IsTrue,
    IsNotTrue,
}

pub const ALL_OPS: [Op; 18] = [
    Op::StringIn,
    Op::StringNotIn,
    Op::StringStartsWith,
    Op::StringNotStartsWith,
    Op::StringEndsWith,
    Op::StringNotEndsWith,
    Op::NumberIn,
    Op::NumberNotIn,
    Op::NumberLessThan,
    Op::NumberNotLessThan,
    Op::NumberGreaterThan,
    Op::NumberNotGreaterThan,
    Op::NumberInRange,
    Op::NumberNotInRange,
    Op::IsNull,
    Op::IsNotNull,
    Op::IsTrue,
    Op::IsNotTrue,
];

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::StringIn => "StringIn",
            Op::StringNotIn => "StringNotIn",
            Op::StringStartsWith => "StringStartsWith",
            Op::StringNotStartsWith => "StringNotStartsWith",
            Op::StringEndsWith => "StringEndsWith",
            Op::StringNotEndsWith => "StringNotEndsWith",
            Op::NumberIn => "NumberIn",
            Op::NumberNotIn => "NumberNotIn",
            Op::NumberLessThan => "NumberLessThan",
            Op::NumberNotLessThan => "NumberNotLessThan",
            Op::NumberGreaterThan => "NumberGreaterThan",
            Op::NumberNotGreaterThan => "NumberNotGreaterThan",
            Op::NumberInRange => "NumberInRange",
            Op::NumberNotInRange => "NumberNotInRange",
            Op::IsNull => "IsNull",
            Op::IsNotNull => "IsNotNull",
            Op::IsTrue => "IsTrue",
            Op::IsNotTrue => "IsNotTrue",
        }
    }

    pub fn from_name(s: &str) -> Option<Op> {
        ALL_OPS.iter().copied().find(|o| o.name() == s)
    }

    /// For a negated operator (`NotX = IsNotNull ∧ ¬X`), its positive counterpart.
    pub fn positive_of(self) -> Option<Op> {
        Some(match self {
            Op::StringNotIn => Op::StringIn,
            Op::StringNotStartsWith => Op::StringStartsWith,
            Op::StringNotEndsWith => Op::StringEndsWith,
            Op::NumberNotIn => Op::NumberIn,
            Op::NumberNotInRange => Op::NumberInRange,
            Op::IsNotTrue => Op::IsTrue,
            _ => return None,
        })
    }
}

/// A condition's operand, already typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    None,
    Strings(Vec<String>),
    Numbers(Vec<Num>),
    Number(Num),
    Ranges(Vec<(Num, Num)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub op: Op,
    pub operand: Operand,
}

/// One matching field of a rule: its path and its conditions (OR-ed, or AND-ed for an and-block).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldFilter {
    /// `["source"]`, `["type"]`, `["subject"]` or `["data", k1, …, kn]`.
    pub path: Vec<String>,
    pub conditions: Vec<Condition>,
    /// True for an and-block.
    pub all: bool,
}

impl FieldFilter {
    pub fn dotted(&self) -> String {
        self.path.join(".")
    }
}

/// A validated rule: every matching field must be true.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub fields: Vec<FieldFilter>,
}

/// A candidate scalar. Strings are raw UTF-8 bytes, already unescaped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    Str(&'a [u8]),
    Num(Num),
    Bool(bool),
}

impl Condition {
    /// The positive test of `op` (or of the positive counterpart of a negated `op`) on one
    /// candidate; candidates of another type never satisfy it.
    pub fn positive_test(&self, c: &Scalar<'_>) -> bool {
        let op = self.op.positive_of().unwrap_or(self.op);
        match (op, &self.operand, c) {
            (Op::StringIn, Operand::Strings(v), Scalar::Str(s)) => {
                v.iter().any(|x| x.as_bytes() == *s)
            }
            (Op::StringStartsWith, Operand::Strings(v), Scalar::Str(s)) => {
                v.iter().any(|x| s.starts_with(x.as_bytes()))
            }
            (Op::StringEndsWith, Operand::Strings(v), Scalar::Str(s)) => {
                v.iter().any(|x| s.ends_with(x.as_bytes()))
            }
            (Op::NumberIn, Operand::Numbers(v), Scalar::Num(n)) => v.iter().any(|x| n.num_eq(*x)),
            (Op::NumberLessThan, Operand::Number(x), Scalar::Num(n)) => {
                n.cmp_num(*x) == Some(std::cmp::Ordering::Less)
            }
            (Op::NumberNotLessThan, Operand::Number(x), Scalar::Num(n)) => matches!(
                n.cmp_num(*x),
                Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
            ),
            (Op::NumberGreaterThan, Operand::Number(x), Scalar::Num(n)) => {
                n.cmp_num(*x) == Some(std::cmp::Ordering::Greater)
            }
            (Op::NumberNotGreaterThan, Operand::Number(x), Scalar::Num(n)) => matches!(
                n.cmp_num(*x),
                Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
            ),
            (Op::NumberInRange, Operand::Ranges(v), Scalar::Num(n)) => v.iter().any(|(lo, hi)| {
                matches!(
                    n.cmp_num(*lo),
                    Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
                ) && matches!(
                    n.cmp_num(*hi),
                    Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
                )
            }),
            (Op::IsTrue, _, Scalar::Bool(b)) => *b,
            _ => false,
        }
    }

    /// Truth of the condition given the field's state (absent, null, present).
    pub fn eval_with<'a>(
        &self,
        nonnull: bool,
        candidates: impl IntoIterator<Item = Scalar<'a>>,
    ) -> bool {
        match self.op {
            Op::IsNull => !nonnull,
            Op::IsNotNull => nonnull,
            op if op.positive_of().is_some() => {
                nonnull && !candidates.into_iter().any(|c| self.positive_test(&c))
            }
            _ => candidates.into_iter().any(|c| self.positive_test(&c)),
        }
    }

    /// Compact JSON-ish description used in explanations.
    pub fn describe(&self) -> String {
        let operand = match &self.operand {
            Operand::None => String::new(),
            Operand::Strings(v) => format!(" {}", serde_json::to_string(v).unwrap_or_default()),
            Operand::Numbers(v) => format!(
                " [{}]",
                v.iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Operand::Number(n) => format!(" {n}"),
            Operand::Ranges(v) => format!(
                " [{}]",
                v.iter()
                    .map(|(a, b)| format!("[{a},{b}]"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        };
        format!("{}{}", self.op.name(), operand)
    }
}
