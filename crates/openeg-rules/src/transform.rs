//! TransForm objects (`docs/transforms.md`): validation and rendering of ORIGINAL, CONSTANT,
//! VARIABLE (and NONE for keys). A transform is compiled once per target; rendering never
//! panics, whatever the event holds.

use crate::jsonpath::{JsonPath, PathValue};
use crate::{RuleError, TransformUse};
use serde_json::Value;

const MAX_VARS: usize = 100; // variables per VARIABLE value
const MAX_NAME: usize = 64; // characters of a variable name
const MAX_TEXT: usize = 1024; // expressions, value, template

#[derive(Debug, Clone)]
enum Expr {
    Path(JsonPath),
    Const(Value),
}

#[derive(Debug, Clone)]
enum Piece {
    Lit(String),
    Ref {
        var: usize,
        default: Option<String>,
        /// Inside a JSON string of the template: inserted text is JSON-string-escaped.
        in_string: bool,
    },
}

#[derive(Debug, Clone)]
enum Kind {
    Original,
    Constant(String),
    Variable {
        vars: Vec<Expr>,
        pieces: Vec<Piece>,
    },
    /// Keys only: NONE, or ORIGINAL used as a key.
    NoOutput,
}

/// A validated, compiled TransForm.
#[derive(Debug, Clone)]
pub struct CompiledTransform {
    kind: Kind,
}

/// The output of a transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rendered {
    Text(String),
    /// A key transform that yields no key (NONE, or ORIGINAL used as a key).
    None,
}

fn err(path: &str, msg: impl Into<String>) -> RuleError {
    RuleError::new(path, msg)
}

fn valid_name(n: &str) -> bool {
    let mut cs = n.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphanumeric())
        && cs.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl TransformUse {
    /// The transform `type`s accepted for this use.
    pub fn allowed_types(self) -> &'static [&'static str] {
        match self {
            TransformUse::Payload | TransformUse::FunctionGraphPayload => {
                &["ORIGINAL", "CONSTANT", "VARIABLE"]
            }
            TransformUse::Key => &["NONE", "ORIGINAL", "CONSTANT", "VARIABLE"],
            TransformUse::SmnSubject => &["CONSTANT", "VARIABLE"],
        }
    }
}

impl CompiledTransform {
    /// Validates and compiles a TransForm `{type, value, template}`.
    pub fn compile(t: &Value, usage: TransformUse) -> Result<Self, RuleError> {
        let obj = t
            .as_object()
            .ok_or_else(|| err("", "a transform must be a JSON object"))?;
        let ty = obj
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| err("type", "type is required: ORIGINAL, CONSTANT or VARIABLE"))?;
        let allowed = usage.allowed_types();
        if !allowed.contains(&ty) {
            return Err(err(
                "type",
                format!(
                    "type {ty:?} is not allowed here; expected one of {}",
                    allowed.join(", ")
                ),
            ));
        }
        let text = |k: &str| -> Result<&str, RuleError> {
            let v = obj
                .get(k)
                .ok_or_else(|| err(k, format!("{ty} needs {k}")))?
                .as_str()
                .ok_or_else(|| err(k, format!("{k} must be a string")))?;
            Ok(v)
        };
        let kind = match ty {
            "NONE" => Kind::NoOutput,
            "ORIGINAL" if usage == TransformUse::Key => Kind::NoOutput,
            "ORIGINAL" => Kind::Original,
            "CONSTANT" => {
                let v = text("value")?;
                if v.chars().count() > MAX_TEXT {
                    return Err(err(
                        "value",
                        format!("value is longer than {MAX_TEXT} characters"),
                    ));
                }
                if usage == TransformUse::FunctionGraphPayload
                    && !serde_json::from_str::<Value>(v).is_ok_and(|j| j.is_object())
                {
                    return Err(err(
                        "value",
                        "a FunctionGraph payload must be a JSON object",
                    ));
                }
                Kind::Constant(v.to_string())
            }
            _ => compile_variable(text("value")?, obj.get("template"), usage)?,
        };
        Ok(CompiledTransform { kind })
    }

    /// Whether the output is the whole event unchanged (a caller holding the event's JSON text
    /// may send that instead of rendering).
    pub fn is_original(&self) -> bool {
        matches!(self.kind, Kind::Original)
    }

    /// Renders the transform for one event (the whole CloudEvent object).
    pub fn render(&self, event: &Value) -> Rendered {
        match &self.kind {
            Kind::NoOutput => Rendered::None,
            Kind::Original => Rendered::Text(serde_json::to_string(event).unwrap_or_default()),
            Kind::Constant(s) => Rendered::Text(s.clone()),
            Kind::Variable { vars, pieces } => {
                let mut out = String::new();
                for p in pieces {
                    match p {
                        Piece::Lit(s) => out.push_str(s),
                        Piece::Ref {
                            var,
                            default,
                            in_string,
                        } => {
                            let text = match vars.get(*var) {
                                Some(Expr::Const(v)) => Some(value_text(v)),
                                Some(Expr::Path(p)) => match p.eval(event) {
                                    PathValue::Missing => None,
                                    PathValue::One(v) => Some(value_text(v)),
                                    PathValue::Many(vs) => {
                                        Some(serde_json::to_string(&vs).unwrap_or_default())
                                    }
                                },
                                None => None,
                            };
                            let text = text.or_else(|| default.clone()).unwrap_or_default();
                            if *in_string {
                                let q = serde_json::to_string(&text).unwrap_or_default();
                                out.push_str(&q[1..q.len().saturating_sub(1).max(1)]);
                            } else {
                                out.push_str(&text);
                            }
                        }
                    }
                }
                Rendered::Text(out)
            }
        }
    }

    /// Renders to text; `None` for a transform that yields no output (a key-less key).
    pub fn render_text(&self, event: &Value) -> Option<String> {
        match self.render(event) {
            Rendered::Text(s) => Some(s),
            Rendered::None => None,
        }
    }
}

/// Strings unquoted, numbers as their JSON text, other values as compact JSON.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

fn compile_variable(
    value: &str,
    template: Option<&Value>,
    usage: TransformUse,
) -> Result<Kind, RuleError> {
    let defs: Value = serde_json::from_str(value)
        .map_err(|e| err("value", format!("value must be a JSON object string: {e}")))?;
    let defs = defs.as_object().ok_or_else(|| {
        err(
            "value",
            "value must be a JSON object string, not another JSON type",
        )
    })?;
    if defs.len() > MAX_VARS {
        return Err(err(
            "value",
            format!("{} variables, at most {MAX_VARS} are allowed", defs.len()),
        ));
    }
    let mut names = Vec::with_capacity(defs.len());
    let mut vars = Vec::with_capacity(defs.len());
    for (name, expr) in defs {
        let at = format!("value.{name}");
        if !valid_name(name) || name.chars().count() > MAX_NAME || name.starts_with("HC.") {
            return Err(err(
                &at,
                format!(
                    "variable name {name:?} must match ^[A-Za-z0-9][A-Za-z0-9._-]*$, be at most {MAX_NAME} characters and not start with HC."
                ),
            ));
        }
        let e = match expr {
            Value::Object(_) | Value::Array(_) => {
                return Err(err(&at, "variables cannot be nested objects or arrays"))
            }
            Value::String(s) => {
                if s.chars().count() > MAX_TEXT {
                    return Err(err(
                        &at,
                        format!("expression is longer than {MAX_TEXT} characters"),
                    ));
                }
                if s.starts_with('$') {
                    Expr::Path(
                        JsonPath::parse(s)
                            .map_err(|m| err(&at, format!("invalid JSONPath {s:?}: {m}")))?,
                    )
                } else {
                    Expr::Const(expr.clone())
                }
            }
            other => Expr::Const(other.clone()),
        };
        names.push(name.clone());
        vars.push(e);
    }
    if value.chars().count() > MAX_TEXT {
        return Err(err(
            "value",
            format!("value is longer than {MAX_TEXT} characters"),
        ));
    }
    let template = match template {
        None | Some(Value::Null) => return Err(err("template", "VARIABLE needs a template")),
        Some(Value::String(s)) if s.is_empty() => {
            return Err(err("template", "template must not be empty"))
        }
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(err("template", "template must be a string")),
    };
    if template.chars().count() > MAX_TEXT {
        return Err(err(
            "template",
            format!("template is longer than {MAX_TEXT} characters"),
        ));
    }
    let pieces = parse_template(template, &names)?;
    if usage == TransformUse::FunctionGraphPayload {
        // FunctionGraph: the template must be a JSON object once references are replaced.
        let mut probe = String::new();
        for p in &pieces {
            match p {
                Piece::Lit(s) => probe.push_str(s),
                Piece::Ref {
                    in_string: false, ..
                } => probe.push('0'),
                Piece::Ref { .. } => {}
            }
        }
        if !serde_json::from_str::<Value>(&probe).is_ok_and(|v| v.is_object()) {
            return Err(err(
                "template",
                "a FunctionGraph template must render to a JSON object",
            ));
        }
    }
    Ok(Kind::Variable { vars, pieces })
}

/// Splits a template into literals and `${…}` references and marks which references
/// sit inside a JSON string of the literal text.
fn parse_template(t: &str, names: &[String]) -> Result<Vec<Piece>, RuleError> {
    let b = t.as_bytes();
    let mut pieces = Vec::new();
    let mut lit_start = 0;
    let mut i = 0;
    let mut in_string = false;
    let mut escape = false;
    let bad = |m: String| err("template", m);
    while i < b.len() {
        if b[i] == b'$' && b.get(i + 1) == Some(&b'{') {
            if lit_start < i {
                pieces.push(Piece::Lit(t[lit_start..i].to_string()));
            }
            let name_start = i + 2;
            let mut j = name_start;
            while j < b.len()
                && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'.' | b'_' | b'-'))
            {
                j += 1;
            }
            let name = &t[name_start..j];
            if name.is_empty() || !valid_name(name) {
                return Err(bad(format!(
                    "malformed reference at byte {i}: empty or invalid variable name"
                )));
            }
            let var = names
                .iter()
                .position(|n| n == name)
                .ok_or_else(|| bad(format!("reference to undefined variable {name:?}")))?;
            let default = match b.get(j) {
                Some(b'}') => {
                    j += 1;
                    None
                }
                Some(b'!') => {
                    j += 1;
                    let (text, next) = parse_default(b, j).ok_or_else(|| {
                        bad(format!("malformed default in reference at byte {i}"))
                    })?;
                    j = next;
                    Some(text)
                }
                _ => return Err(bad(format!("unclosed or malformed reference at byte {i}"))),
            };
            pieces.push(Piece::Ref {
                var,
                default,
                in_string,
            });
            i = j;
            lit_start = i;
            continue;
        }
        // Literal text: track JSON string context.
        if in_string {
            if escape {
                escape = false;
            } else if b[i] == b'\\' {
                escape = true;
            } else if b[i] == b'"' {
                in_string = false;
            }
        } else if b[i] == b'"' {
            in_string = true;
        }
        i += 1;
    }
    if lit_start < b.len() {
        pieces.push(Piece::Lit(t[lit_start..].to_string()));
    }
    Ok(pieces)
}

/// After `!`: `}` (empty), `"text"}` (with `\"`, `\\` escapes) or `\"text\"}`. Returns the
/// default and the index after `}`.
fn parse_default(b: &[u8], mut j: usize) -> Option<(String, usize)> {
    let mut out = Vec::new();
    match b.get(j)? {
        b'}' => return Some((String::new(), j + 1)),
        b'"' => {
            j += 1;
            loop {
                match *b.get(j)? {
                    b'\\' => {
                        let c = *b.get(j + 1)?;
                        if c != b'"' && c != b'\\' {
                            out.push(b'\\');
                        }
                        out.push(c);
                        j += 2;
                    }
                    b'"' => {
                        j += 1;
                        break;
                    }
                    c => {
                        out.push(c);
                        j += 1;
                    }
                }
            }
        }
        b'\\' if b.get(j + 1) == Some(&b'"') => {
            j += 2;
            loop {
                if b.get(j)? == &b'\\' && b.get(j + 1) == Some(&b'"') {
                    j += 2;
                    break;
                }
                out.push(*b.get(j)?);
                j += 1;
            }
        }
        _ => return None,
    }
    if b.get(j) != Some(&b'}') {
        return None;
    }
    Some((String::from_utf8(out).ok()?, j + 1))
}
