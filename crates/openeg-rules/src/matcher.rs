//! The compiled matcher: all rules of a channel in one immutable structure.
//!
//! Compilation dedupes identical conditions, identical matching fields ("specs") and identical
//! rules, so a condition shared by many rules is evaluated once per event. Per field, positive
//! tests are indexed: exact strings in a hash map, prefixes and suffixes in byte tries, numeric
//! tests as intervals in a max-augmented interval tree, `IsTrue` as a list. Negated operators
//! reuse the positive index (`NotX = IsNotNull ∧ ¬X`, see `docs/filter-rules.md`).
//!
//! Each rule is *anchored* at its most selective spec; an event only visits the rules whose
//! anchor became true (through an index hit, or a field being present), then checks their
//! remaining specs with per-event memoisation. Cost therefore tracks the number of rules that
//! could match, not the number of rules, and many rules sharing a first condition cost nothing
//! extra when they differ elsewhere.

use crate::filter::{eval::eval_filter, Filter, Op, Operand, Scalar};
use crate::number::Num;
use crate::scan::{self, PathTrie, ScanError, Sink, WANT_BOOL, WANT_NUM, WANT_STR};
use crate::RuleError;
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A small fast hasher for short byte strings (the exact-match tables).
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            h = (h.rotate_left(5) ^ b as u64).wrapping_mul(K);
        }
        self.0 = h;
    }
    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0.rotate_left(5) ^ n as u64).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// An immutable open-addressing table from exact strings to condition lists. Keys and lists
/// live in two flat arenas and a one-condition list is stored in the slot itself, so a lookup
/// touches about two cache lines however many rules there are.
#[derive(Debug, Default, Clone)]
struct ExactTable {
    /// 16-bit hash tags parallel to `slots` (0 = empty): a miss, the common case, reads only
    /// this small array, which stays in L1/L2 even for tens of thousands of keys.
    tags: Vec<u16>,
    slots: Vec<Slot>,
    keys: Vec<u8>,
    lists: Vec<u32>,
}

/// 16 bytes, so large tables stay cache-resident. `kind`: 0 empty, 1 single condition (`list`
/// is its id), 2 several (`lists[list]` is the count, the ids follow).
#[derive(Debug, Default, Clone, Copy)]
struct Slot {
    tag: u32,
    key_off: u32,
    list: u32,
    key_len: u16,
    kind: u16,
}

/// Never 0 (0 marks an empty slot).
#[inline]
fn tag16(h: u64) -> u16 {
    ((h >> 48) as u16) | 1
}

#[inline]
fn hash_bytes(b: &[u8]) -> u64 {
    let mut h = FxHasher(b.len() as u64);
    h.write(b);
    let x = h.0;
    // Final avalanche so the low bits used for the slot index are well mixed.
    (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (x >> 32)
}

impl ExactTable {
    fn build(map: FxMap<Box<[u8]>, Vec<u32>>) -> Self {
        if map.is_empty() {
            return Self::default();
        }
        // Load factor at most ~0.7.
        let cap = (map.len() * 10 / 7 + 1).next_power_of_two();
        let mut t = ExactTable {
            tags: vec![0; cap],
            slots: vec![Slot::default(); cap],
            keys: Vec::new(),
            lists: Vec::new(),
        };
        let mut entries: Vec<_> = map.into_iter().collect();
        entries.sort(); // Deterministic layout.
        for (k, mut conds) in entries {
            conds.sort_unstable();
            conds.dedup();
            let h = hash_bytes(&k);
            let mut i = h as usize & (cap - 1);
            while t.tags[i] != 0 {
                i = (i + 1) & (cap - 1);
            }
            t.tags[i] = tag16(h);
            let (list, kind) = if conds.len() == 1 {
                (conds[0], 1)
            } else {
                let off = t.lists.len() as u32;
                t.lists.push(conds.len() as u32);
                t.lists.extend_from_slice(&conds);
                (off, 2)
            };
            t.slots[i] = Slot {
                tag: (h >> 32) as u32,
                key_off: t.keys.len() as u32,
                list,
                // Filter strings are bounded by the 2048-byte rule limit (V14).
                key_len: k.len().min(u16::MAX as usize) as u16,
                kind,
            };
            t.keys.extend_from_slice(&k);
        }
        t
    }

    #[inline]
    fn get(&self, key: &[u8]) -> &[u32] {
        if self.slots.is_empty() || key.len() >= u16::MAX as usize {
            return &[];
        }
        let mask = self.slots.len() - 1;
        let h = hash_bytes(key);
        let tag = (h >> 32) as u32;
        let t16 = tag16(h);
        let mut i = h as usize & mask;
        loop {
            let t = self.tags[i];
            if t == 0 {
                return &[];
            }
            if t != t16 {
                i = (i + 1) & mask;
                continue;
            }
            let s = &self.slots[i];
            if s.tag == tag
                && s.key_len as usize == key.len()
                && &self.keys[s.key_off as usize..s.key_off as usize + key.len()] == key
            {
                return if s.kind == 1 {
                    std::slice::from_ref(&s.list)
                } else {
                    let off = s.list as usize;
                    let n = self.lists[off] as usize;
                    &self.lists[off + 1..off + 1 + n]
                };
            }
            i = (i + 1) & mask;
        }
    }
}

/// A byte trie over prefixes (or reversed suffixes); each node lists conditions that hold
/// when the input reaches it.
#[derive(Debug, Default, Clone)]
struct ByteTrie {
    nodes: Vec<TNode>,
}

#[derive(Debug, Default, Clone)]
struct TNode {
    kids: Vec<(u8, u32)>,
    conds: Vec<u32>,
}

impl ByteTrie {
    fn insert(&mut self, key: impl Iterator<Item = u8>, cond: u32) {
        if self.nodes.is_empty() {
            self.nodes.push(TNode::default());
        }
        let mut cur = 0usize;
        for b in key {
            cur = match self.nodes[cur].kids.binary_search_by_key(&b, |k| k.0) {
                Ok(p) => self.nodes[cur].kids[p].1 as usize,
                Err(p) => {
                    let id = self.nodes.len();
                    self.nodes.push(TNode::default());
                    self.nodes[cur].kids.insert(p, (b, id as u32));
                    id
                }
            };
        }
        self.nodes[cur].conds.push(cond);
    }

    #[inline]
    fn walk(&self, key: impl Iterator<Item = u8>, mut f: impl FnMut(u32)) {
        let Some(root) = self.nodes.first() else {
            return;
        };
        root.conds.iter().for_each(|&c| f(c));
        let mut cur = root;
        for b in key {
            match cur.kids.binary_search_by_key(&b, |k| k.0) {
                Ok(p) => {
                    cur = &self.nodes[cur.kids[p].1 as usize];
                    cur.conds.iter().for_each(|&c| f(c));
                }
                Err(_) => return,
            }
        }
    }
}

/// A numeric interval; unbounded ends use `None`.
#[derive(Debug, Clone)]
struct Interval {
    lo: Option<(Num, bool)>,
    hi: Option<(Num, bool)>,
    lo_f: f64,
    hi_f: f64,
    cond: u32,
}

impl Interval {
    #[inline]
    fn contains(&self, x: Num) -> bool {
        let lo_ok = match self.lo {
            None => true,
            Some((lo, incl)) => match x.cmp_num(lo) {
                Some(Ordering::Greater) => true,
                Some(Ordering::Equal) => incl,
                _ => false,
            },
        };
        lo_ok
            && match self.hi {
                None => true,
                Some((hi, incl)) => match x.cmp_num(hi) {
                    Some(Ordering::Less) => true,
                    Some(Ordering::Equal) => incl,
                    _ => false,
                },
            }
    }
}

/// Intervals sorted by lower bound, with a segment tree of maximal upper bounds: a stabbing
/// query costs O(log n + hits). Doubles only pre-filter (conversion is monotone); each
/// reported interval is confirmed with the exact number comparison.
#[derive(Debug, Default, Clone)]
struct IntervalIndex {
    ivs: Vec<Interval>,
    tree: Vec<f64>,
    size: usize,
}

impl IntervalIndex {
    fn build(mut ivs: Vec<Interval>) -> Self {
        ivs.sort_by(|a, b| a.lo_f.total_cmp(&b.lo_f));
        let size = ivs.len().next_power_of_two().max(1);
        let mut tree = vec![f64::NEG_INFINITY; 2 * size];
        for (i, iv) in ivs.iter().enumerate() {
            tree[size + i] = iv.hi_f;
        }
        for i in (1..size).rev() {
            tree[i] = tree[2 * i].max(tree[2 * i + 1]);
        }
        IntervalIndex { ivs, tree, size }
    }

    #[inline]
    fn query(&self, x: Num, f: &mut impl FnMut(u32)) {
        let xf = x.as_f64();
        let cnt = self.ivs.partition_point(|iv| iv.lo_f <= xf);
        if cnt > 0 {
            self.visit(1, 0, self.size, cnt, x, xf, f);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn visit(
        &self,
        node: usize,
        l: usize,
        r: usize,
        cnt: usize,
        x: Num,
        xf: f64,
        f: &mut impl FnMut(u32),
    ) {
        if l >= cnt || self.tree[node] < xf {
            return;
        }
        if r - l == 1 {
            let iv = &self.ivs[l];
            if iv.contains(x) {
                f(iv.cond);
            }
            return;
        }
        let mid = (l + r) / 2;
        self.visit(2 * node, l, mid, cnt, x, xf, f);
        self.visit(2 * node + 1, mid, r, cnt, x, xf, f);
    }
}

/// The positive-test indexes of one field.
#[derive(Debug, Default, Clone)]
struct FieldIndex {
    exact: ExactTable,
    prefix: ByteTrie,
    suffix: ByteTrie,
    nums: IntervalIndex,
    is_true: Vec<u32>,
    /// Anchor specs that become candidates when the field is present and not null.
    on_nonnull: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CondKind {
    /// True iff one of its index entries hit.
    Positive,
    /// `IsNotNull ∧ ¬(positive counterpart)`.
    Negated,
    IsNull,
    IsNotNull,
}

#[derive(Debug, Clone)]
struct Cond {
    field: u32,
    kind: CondKind,
    /// 0 exact, 1 prefix/suffix, 2 numeric range or boolean (for anchor choice).
    selectivity: u8,
    /// Anchor specs triggered when this condition's index entry hits.
    triggers: Vec<u32>,
}

#[derive(Debug, Clone)]
struct Spec {
    conds: Vec<u32>,
    all: bool,
    /// Groups whose anchor this spec is.
    groups: Vec<u32>,
}

#[derive(Debug, Clone)]
struct Group {
    specs: Vec<u32>,
    anchor: u32,
    rules: Vec<usize>,
}

/// Collects rules, then [`MatcherBuilder::build`]s the immutable [`Matcher`].
#[derive(Debug, Default, Clone)]
pub struct MatcherBuilder {
    filters: Vec<Filter>,
}

impl MatcherBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a validated rule; returns its rule index (the value [`Matcher::matches`] reports).
    pub fn add_filter(&mut self, filter: Filter) -> usize {
        self.filters.push(filter);
        self.filters.len() - 1
    }

    /// Validates and adds a rule.
    pub fn add_rule(&mut self, rule: &Value, require_source: bool) -> Result<usize, RuleError> {
        let f = crate::filter::parse_filter(rule, require_source)?;
        Ok(self.add_filter(f))
    }

    pub fn len(&self) -> usize {
        self.filters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Compiles every added rule into one matcher.
    pub fn build(self) -> Matcher {
        Compiler::default().compile(self.filters)
    }
}

#[derive(Default)]
struct Compiler {
    trie: PathTrie,
    field_of_node: HashMap<usize, u32>,
    fields: Vec<FieldIndex>,
    field_paths: Vec<Vec<String>>,
    field_ivs: Vec<Vec<Interval>>,
    field_exact: Vec<FxMap<Box<[u8]>, Vec<u32>>>,
    conds: Vec<Cond>,
    cond_ids: HashMap<(u32, String), u32>,
    specs: Vec<Spec>,
    spec_ids: HashMap<(Vec<u32>, bool), u32>,
}

impl Compiler {
    fn field(&mut self, path: &[String]) -> u32 {
        let node = self.trie.insert(path);
        if let Some(&f) = self.field_of_node.get(&node) {
            return f;
        }
        let f = self.fields.len() as u32;
        self.field_of_node.insert(node, f);
        self.trie.nodes[node].field = f;
        self.fields.push(FieldIndex::default());
        self.field_paths.push(path.to_vec());
        self.field_ivs.push(Vec::new());
        self.field_exact.push(FxMap::default());
        f
    }

    fn cond(&mut self, field: u32, c: &crate::filter::Condition) -> u32 {
        let key = (field, format!("{:?}|{:?}", c.op, c.operand));
        if let Some(&id) = self.cond_ids.get(&key) {
            return id;
        }
        let id = self.conds.len() as u32;
        self.cond_ids.insert(key, id);
        let positive = c.op.positive_of().unwrap_or(c.op);
        let kind = match c.op {
            Op::IsNull => CondKind::IsNull,
            Op::IsNotNull => CondKind::IsNotNull,
            op if op.positive_of().is_some() => CondKind::Negated,
            _ => CondKind::Positive,
        };
        let node = self.trie.insert(&self.field_paths[field as usize]);
        let fi = &mut self.fields[field as usize];
        let mut selectivity = 2;
        match (positive, &c.operand) {
            (Op::StringIn, Operand::Strings(v)) => {
                selectivity = 0;
                self.trie.nodes[node].wants |= WANT_STR;
                let map = &mut self.field_exact[field as usize];
                for s in v {
                    map.entry(s.as_bytes().into()).or_default().push(id);
                }
            }
            (Op::StringStartsWith, Operand::Strings(v)) => {
                selectivity = 1;
                self.trie.nodes[node].wants |= WANT_STR;
                for s in v {
                    fi.prefix.insert(s.bytes(), id);
                }
            }
            (Op::StringEndsWith, Operand::Strings(v)) => {
                selectivity = 1;
                self.trie.nodes[node].wants |= WANT_STR;
                for s in v {
                    fi.suffix.insert(s.bytes().rev(), id);
                }
            }
            (Op::IsTrue, _) => {
                self.trie.nodes[node].wants |= WANT_BOOL;
                fi.is_true.push(id);
            }
            (op, operand) => {
                let ivs = &mut self.field_ivs[field as usize];
                let mk = |lo: Option<(Num, bool)>, hi: Option<(Num, bool)>| Interval {
                    lo_f: lo.map_or(f64::NEG_INFINITY, |l| l.0.as_f64()),
                    hi_f: hi.map_or(f64::INFINITY, |h| h.0.as_f64()),
                    lo,
                    hi,
                    cond: id,
                };
                match (op, operand) {
                    (Op::NumberIn, Operand::Numbers(v)) => {
                        selectivity = 0;
                        ivs.extend(v.iter().map(|&n| mk(Some((n, true)), Some((n, true)))));
                    }
                    (Op::NumberInRange, Operand::Ranges(v)) => {
                        ivs.extend(v.iter().map(|&(a, b)| mk(Some((a, true)), Some((b, true)))));
                    }
                    (Op::NumberLessThan, Operand::Number(n)) => {
                        ivs.push(mk(None, Some((*n, false))))
                    }
                    (Op::NumberNotGreaterThan, Operand::Number(n)) => {
                        ivs.push(mk(None, Some((*n, true))))
                    }
                    (Op::NumberGreaterThan, Operand::Number(n)) => {
                        ivs.push(mk(Some((*n, false)), None))
                    }
                    (Op::NumberNotLessThan, Operand::Number(n)) => {
                        ivs.push(mk(Some((*n, true)), None))
                    }
                    _ => {}
                }
                if kind != CondKind::IsNull && kind != CondKind::IsNotNull {
                    self.trie.nodes[node].wants |= WANT_NUM;
                }
            }
        }
        if matches!(kind, CondKind::IsNull | CondKind::IsNotNull) {
            selectivity = 3;
        }
        self.conds.push(Cond {
            field,
            kind,
            selectivity,
            triggers: Vec::new(),
        });
        id
    }

    fn compile(mut self, filters: Vec<Filter>) -> Matcher {
        let mut groups: Vec<Group> = Vec::new();
        let mut group_ids: HashMap<Vec<u32>, u32> = HashMap::new();
        let mut always_groups = Vec::new();
        for (rule, f) in filters.iter().enumerate() {
            let mut specs = Vec::with_capacity(f.fields.len());
            for ff in &f.fields {
                let field = self.field(&ff.path);
                let mut conds: Vec<u32> =
                    ff.conditions.iter().map(|c| self.cond(field, c)).collect();
                conds.sort_unstable();
                conds.dedup();
                let key = (conds, ff.all);
                let id = match self.spec_ids.get(&key) {
                    Some(&id) => id,
                    None => {
                        let id = self.specs.len() as u32;
                        self.specs.push(Spec {
                            conds: key.0.clone(),
                            all: ff.all,
                            groups: Vec::new(),
                        });
                        self.spec_ids.insert(key, id);
                        id
                    }
                };
                specs.push(id);
            }
            specs.sort_unstable();
            specs.dedup();
            match group_ids.get(&specs) {
                Some(&g) => groups[g as usize].rules.push(rule),
                None => {
                    group_ids.insert(specs.clone(), groups.len() as u32);
                    groups.push(Group {
                        specs,
                        anchor: u32::MAX,
                        rules: vec![rule],
                    });
                }
            }
        }
        // How many groups use each spec: shared specs make poor anchors.
        let mut share = vec![0u32; self.specs.len()];
        for g in &groups {
            for &s in &g.specs {
                share[s as usize] += 1;
            }
        }
        let mut always_specs = Vec::new();
        for (gi, g) in groups.iter_mut().enumerate() {
            if g.specs.is_empty() {
                always_groups.push(gi as u32);
                continue;
            }
            let best = g
                .specs
                .iter()
                .copied()
                .min_by_key(|&s| self.anchor_score(s, share[s as usize]))
                .unwrap_or(g.specs[0]);
            g.anchor = best;
            let sp = &mut self.specs[best as usize];
            if sp.groups.is_empty() {
                // First time this spec anchors something: register its trigger.
                match self.trigger_of(best) {
                    Trigger::Conds(cs) => {
                        for c in cs {
                            self.conds[c as usize].triggers.push(best);
                        }
                    }
                    Trigger::NonNull(f) => self.fields[f as usize].on_nonnull.push(best),
                    Trigger::Always => always_specs.push(best),
                }
            }
            self.specs[best as usize].groups.push(gi as u32);
        }
        let mut node_of_field = vec![0usize; self.fields.len()];
        for (&node, &f) in &self.field_of_node {
            node_of_field[f as usize] = node;
        }
        for (f, ivs) in self.field_ivs.drain(..).enumerate() {
            if !ivs.is_empty() {
                let lo = ivs.iter().map(|iv| iv.lo_f).fold(f64::INFINITY, f64::min);
                let hi = ivs
                    .iter()
                    .map(|iv| iv.hi_f)
                    .fold(f64::NEG_INFINITY, f64::max);
                self.trie.nodes[node_of_field[f]].num_hull = Some((lo, hi));
            }
            self.fields[f].nums = IntervalIndex::build(ivs);
        }
        for (f, map) in self.field_exact.drain(..).enumerate() {
            self.fields[f].exact = ExactTable::build(map);
        }
        self.trie.finish();
        Matcher {
            trie: self.trie,
            fields: self.fields,
            field_paths: self.field_paths,
            conds: self.conds,
            specs: self.specs,
            groups,
            always_specs,
            always_groups,
            filters,
        }
    }

    /// Lower is better: (trigger class, selectivity with attribute penalty, sharing).
    fn anchor_score(&self, s: u32, share: u32) -> (u8, u8, u32) {
        let sp = &self.specs[s as usize];
        let field = self.conds[sp.conds[0] as usize].field;
        // source and type are usually the same for every event of a channel.
        let penalty = match self.field_paths[field as usize][0].as_str() {
            "source" => 4,
            "type" => 2,
            _ => 0,
        };
        match self.trigger_of(s) {
            Trigger::Conds(_) => {
                let sel = if sp.all {
                    sp.conds
                        .iter()
                        .map(|&c| &self.conds[c as usize])
                        .filter(|c| c.kind == CondKind::Positive)
                        .map(|c| c.selectivity)
                        .min()
                        .unwrap_or(2)
                } else {
                    sp.conds
                        .iter()
                        .map(|&c| self.conds[c as usize].selectivity)
                        .max()
                        .unwrap_or(2)
                };
                (0, sel + penalty, share)
            }
            Trigger::NonNull(_) => (1, penalty, share),
            Trigger::Always => (2, penalty, share),
        }
    }

    /// How a spec can become true: through one condition's index hit, through its field being
    /// present, or possibly on any event (it holds for absent fields).
    fn trigger_of(&self, s: u32) -> Trigger {
        let sp = &self.specs[s as usize];
        let conds = || sp.conds.iter().map(|&c| &self.conds[c as usize]);
        let field = self.conds[sp.conds[0] as usize].field;
        if sp.all {
            if let Some((i, _)) = sp
                .conds
                .iter()
                .zip(conds())
                .filter(|(_, c)| c.kind == CondKind::Positive)
                .min_by_key(|(_, c)| c.selectivity)
            {
                return Trigger::Conds(vec![*i]);
            }
            if conds().any(|c| c.kind != CondKind::IsNull) {
                return Trigger::NonNull(field);
            }
            Trigger::Always
        } else if conds().all(|c| c.kind == CondKind::Positive) {
            Trigger::Conds(sp.conds.clone())
        } else if conds().any(|c| c.kind == CondKind::IsNull) {
            Trigger::Always
        } else {
            // An OR of several conditions, none of which holds on an absent field.
            Trigger::NonNull(field)
        }
    }
}

enum Trigger {
    Conds(Vec<u32>),
    NonNull(u32),
    Always,
}

/// All rules of a channel, compiled. Immutable; share it across threads and give each thread
/// its own [`Scratch`].
#[derive(Debug, Clone)]
pub struct Matcher {
    trie: PathTrie,
    fields: Vec<FieldIndex>,
    field_paths: Vec<Vec<String>>,
    conds: Vec<Cond>,
    specs: Vec<Spec>,
    groups: Vec<Group>,
    always_specs: Vec<u32>,
    always_groups: Vec<u32>,
    filters: Vec<Filter>,
}

/// Per-thread working memory for [`Matcher::matches_into`]; reused across events so the hot
/// path does not allocate. Entries are valid when their stamp equals the current epoch.
#[derive(Debug, Default, Clone)]
pub struct Scratch {
    epoch: u32,
    nonnull: Vec<u32>,
    cond_hit: Vec<u32>,
    spec_stamp: Vec<u32>,
    spec_val: Vec<bool>,
    spec_visit: Vec<u32>,
    pending: Vec<u32>,
    nonnull_fields: Vec<u32>,
    buf: Vec<u8>,
    bits: Vec<u64>,
}

impl Scratch {
    fn prepare(&mut self, m: &Matcher) {
        if self.nonnull.len() != m.fields.len()
            || self.cond_hit.len() != m.conds.len()
            || self.spec_stamp.len() != m.specs.len()
            || self.epoch == u32::MAX
        {
            self.nonnull = vec![0; m.fields.len()];
            self.cond_hit = vec![0; m.conds.len()];
            self.spec_stamp = vec![0; m.specs.len()];
            self.spec_val = vec![false; m.specs.len()];
            self.spec_visit = vec![0; m.specs.len()];
            self.epoch = 0;
        }
        self.epoch += 1;
        self.pending.clear();
        self.nonnull_fields.clear();
    }
}

struct EventSink<'m, 's> {
    m: &'m Matcher,
    s: &'s mut Scratch,
}

impl EventSink<'_, '_> {
    #[inline]
    fn hit_cond(&mut self, c: u32) {
        let epoch = self.s.epoch;
        let slot = &mut self.s.cond_hit[c as usize];
        if *slot != epoch {
            *slot = epoch;
            self.s
                .pending
                .extend_from_slice(&self.m.conds[c as usize].triggers);
        }
    }
}

impl Sink for EventSink<'_, '_> {
    #[inline]
    fn hit(&mut self, field: u32, nonnull: bool) {
        if nonnull && self.s.nonnull[field as usize] != self.s.epoch {
            self.s.nonnull[field as usize] = self.s.epoch;
            self.s.nonnull_fields.push(field);
        }
    }

    #[inline]
    fn scalar(&mut self, field: u32, value: Scalar<'_>) {
        let fi = &self.m.fields[field as usize];
        match value {
            Scalar::Str(s) => {
                for &c in fi.exact.get(s) {
                    self.hit_cond(c);
                }
                fi.prefix.walk(s.iter().copied(), |c| self.hit_cond(c));
                fi.suffix
                    .walk(s.iter().rev().copied(), |c| self.hit_cond(c));
            }
            Scalar::Num(n) => fi.nums.query(n, &mut |c| self.hit_cond(c)),
            Scalar::Bool(true) => {
                for &c in &fi.is_true {
                    self.hit_cond(c);
                }
            }
            Scalar::Bool(false) => {}
        }
    }
}

impl Matcher {
    /// Number of rules compiled in (rule indices are `0..rule_count()`).
    pub fn rule_count(&self) -> usize {
        self.filters.len()
    }

    /// The rules as compiled, by rule index.
    pub fn filters(&self) -> &[Filter] {
        &self.filters
    }

    /// Distinct field paths named by the rules.
    pub fn field_count(&self) -> usize {
        self.field_paths.len()
    }

    /// Rule indices matching the raw JSON event, ascending. Malformed JSON matches nothing
    /// (except that bytes after the last key any rule names are not checked).
    pub fn matches(&self, event: &[u8]) -> Vec<usize> {
        let mut scratch = Scratch::default();
        let mut out = Vec::new();
        let _ = self.matches_into(event, &mut scratch, &mut out);
        out
    }

    /// Rule indices matching a parsed event, ascending.
    pub fn matches_value(&self, event: &Value) -> Vec<usize> {
        serde_json::to_vec(event)
            .map(|b| self.matches(&b))
            .unwrap_or_default()
    }

    /// The allocation-free entry point: clears `out`, then fills it with the matching rule
    /// indices (ascending). On malformed JSON `out` stays empty and the error is returned
    /// (bytes after the last key any rule names are not checked).
    pub fn matches_into(
        &self,
        event: &[u8],
        scratch: &mut Scratch,
        out: &mut Vec<usize>,
    ) -> Result<(), ScanError> {
        out.clear();
        scratch.prepare(self);
        let mut buf = std::mem::take(&mut scratch.buf);
        let r = scan::scan(
            &self.trie,
            event,
            &mut EventSink {
                m: self,
                s: scratch,
            },
            &mut buf,
        );
        scratch.buf = buf;
        match r {
            Ok(false) => {}
            Ok(true) => {
                // A named key was duplicated: normalise (last occurrence wins) and rescan.
                let v: Value =
                    serde_json::from_slice(event).map_err(|_| ScanError { offset: 0 })?;
                let norm = serde_json::to_vec(&v).map_err(|_| ScanError { offset: 0 })?;
                return self.matches_into(&norm, scratch, out);
            }
            Err(e) => return Err(e),
        }
        self.collect(scratch, out);
        Ok(())
    }

    fn collect(&self, s: &mut Scratch, out: &mut Vec<usize>) {
        for &f in &s.nonnull_fields {
            s.pending
                .extend_from_slice(&self.fields[f as usize].on_nonnull);
        }
        s.pending.extend_from_slice(&self.always_specs);
        let pending = std::mem::take(&mut s.pending);
        for &sp in &pending {
            if s.spec_visit[sp as usize] == s.epoch {
                continue; // Its groups were already visited this event.
            }
            s.spec_visit[sp as usize] = s.epoch;
            if !self.spec_true(sp, s) {
                continue;
            }
            for &g in &self.specs[sp as usize].groups {
                let grp = &self.groups[g as usize];
                if grp.specs.iter().all(|&o| o == sp || self.spec_true(o, s)) {
                    out.extend_from_slice(&grp.rules);
                }
            }
        }
        s.pending = pending;
        for &g in &self.always_groups {
            out.extend_from_slice(&self.groups[g as usize].rules);
        }
        // Rule indices are distinct; order them. Many matches: a bitset pass over all rules is
        // cheaper than a comparison sort.
        let n = self.filters.len();
        if out.len() <= 64 || out.len() * 16 < n / 64 {
            out.sort_unstable();
        } else {
            let words = n.div_ceil(64);
            s.bits.clear();
            s.bits.resize(words, 0);
            for &r in out.iter() {
                s.bits[r / 64] |= 1u64 << (r % 64);
            }
            out.clear();
            for (w, &bits) in s.bits.iter().enumerate() {
                let mut b = bits;
                while b != 0 {
                    out.push(w * 64 + b.trailing_zeros() as usize);
                    b &= b - 1;
                }
            }
        }
    }

    #[inline]
    fn spec_true(&self, sp: u32, s: &mut Scratch) -> bool {
        if s.spec_stamp[sp as usize] == s.epoch {
            return s.spec_val[sp as usize];
        }
        let spec = &self.specs[sp as usize];
        let cond_true = |c: u32| {
            let cd = &self.conds[c as usize];
            let nonnull = s.nonnull[cd.field as usize] == s.epoch;
            match cd.kind {
                CondKind::Positive => s.cond_hit[c as usize] == s.epoch,
                CondKind::Negated => nonnull && s.cond_hit[c as usize] != s.epoch,
                CondKind::IsNull => !nonnull,
                CondKind::IsNotNull => nonnull,
            }
        };
        let v = if spec.all {
            spec.conds.iter().all(|&c| cond_true(c))
        } else {
            spec.conds.iter().any(|&c| cond_true(c))
        };
        s.spec_stamp[sp as usize] = s.epoch;
        s.spec_val[sp as usize] = v;
        v
    }

    /// Why rule `rule` does not match a parsed event (the first false matching field), or
    /// `None` when it matches. Uses the direct evaluator, not the compiled index.
    pub fn explain(&self, rule: usize, event: &Value) -> Option<String> {
        self.filters
            .get(rule)
            .and_then(|f| eval_filter(f, event).err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn build(rules: &[Value]) -> Matcher {
        let mut b = MatcherBuilder::new();
        for r in rules {
            b.add_rule(r, true).expect("valid rule");
        }
        b.build()
    }

    /// Specs evaluated for the last event: the work `collect` did.
    fn specs_evaluated(s: &Scratch) -> usize {
        s.spec_stamp.iter().filter(|&&e| e == s.epoch).count()
    }

    /// 1,000 rules sharing `source` and differing in `type`: each is anchored at its `type`,
    /// so an event evaluates the specs of the rules its `type` hits, not all 1,000.
    #[test]
    fn shared_first_condition_is_not_a_candidate_list() {
        let mut rules: Vec<Value> = (0..1000)
            .map(|k| {
                json!({"source": [{"op": "StringIn", "values": ["orders-app"]}],
                       "type": [{"op": "StringIn", "values": [format!("order.v{k}")]}]})
            })
            .collect();
        // Identical to rule 7: both are reported.
        rules.push(rules[7].clone());
        let m = build(&rules);
        let mut s = Scratch::default();
        let mut out = Vec::new();
        let cases = [
            ("orders-app", "order.v7", vec![7, 1000]),
            ("orders-app", "order.v999", vec![999]),
            ("orders-app", "order.v1000", vec![]),
            ("billing-app", "order.v7", vec![]),
        ];
        for (source, ty, expect) in cases {
            let ev = json!({"specversion": "1.0", "id": "1", "source": source, "type": ty,
                            "data": {"type": "Feature", "n": [1, 2, 3]}});
            m.matches_into(ev.to_string().as_bytes(), &mut s, &mut out)
                .expect("well-formed event");
            assert_eq!(out, expect, "{source} {ty}");
            assert!(
                specs_evaluated(&s) <= 2,
                "{source} {ty}: {}",
                specs_evaluated(&s)
            );
        }
    }

    /// The anchor is the spec fewest rules share, whatever order the fields are written in.
    #[test]
    fn anchors_avoid_specs_shared_by_many_rules() {
        let rules: Vec<Value> = (0..200)
            .map(|k| {
                json!({"source": [{"op": "StringIn", "values": ["s"]}],
                       "type": [{"op": "StringIn", "values": ["t"]}],
                       "data": {"id": [{"op": "NumberIn", "values": [k]}]}})
            })
            .collect();
        let m = build(&rules);
        for g in &m.groups {
            let field = m.conds[m.specs[g.anchor as usize].conds[0] as usize].field;
            assert_eq!(m.field_paths[field as usize], ["data", "id"]);
        }
        let mut s = Scratch::default();
        let mut out = Vec::new();
        let ev = json!({"source": "s", "type": "t", "data": {"id": 42}});
        m.matches_into(ev.to_string().as_bytes(), &mut s, &mut out)
            .expect("well-formed event");
        assert_eq!(out, [42]);
        assert!(specs_evaluated(&s) <= 3);
    }

    /// Regression: the scanner stopped early inside an array of a named field (`data.a`, also
    /// the prefix of `data.a.b`) once no named key followed, losing the later candidate "x".
    #[test]
    fn early_stop_keeps_candidates_of_an_open_field_array() {
        let m = build(&[
            json!({"source": [{"op": "StringIn", "values": ["s"]}],
                   "data": {"a": [{"op": "StringIn", "values": ["x"]}]}}),
            json!({"source": [{"op": "StringIn", "values": ["s"]}],
                   "data": {"a": {"b": [{"op": "StringIn", "values": ["y"]}]}}}),
        ]);
        let big: Vec<u32> = (0..100).collect();
        let ev = json!({"source": "s", "data": {"a": [{"z": big}, "x"]}});
        assert_eq!(m.matches(ev.to_string().as_bytes()), [0]);
    }
}
