//! Property tests: generated rules and events; the compiled matcher (on compact and pretty
//! JSON bytes) and the direct evaluator must agree with the independent reference.

mod common;

use openeg_rules::filter::eval::eval_filter;
use openeg_rules::{parse_filter, MatcherBuilder};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const KEYS: [&str; 4] = ["a", "b", "c", "and"];
/// Includes strings with brackets, quotes and backslashes, which skipped values must honour.
const STRS: [&str; 11] = [
    "", "a", "ab", "ba", "abc", "x\"y", "é", "b", "a{b", "]\\", "\\\"}",
];

fn num_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-3i64..12).prop_map(|i| json!(i)),
        Just(json!(1.5)),
        Just(json!(2.0)),
        Just(json!(-0.5)),
        Just(json!(9007199254740993i64)),
        Just(json!(9007199254740992.0)),
        Just(json!(1e20)),
        Just(json!(u64::MAX)),
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(&STRS[..]).prop_map(|s| json!(s)),
        num_value(),
        any::<bool>().prop_map(|b| json!(b)),
        Just(Value::Null),
    ]
}

/// An object with a member no rule names, large enough (over 128 bytes) that the scanner
/// considers stopping early when it meets it; a key rules may name (at this level or another)
/// before or after it moves the point where stopping is allowed.
fn padding() -> impl Strategy<Value = Value> {
    const NAMED: [&str; 7] = ["a", "b", "c", "and", "type", "subject", "data"];
    (
        prop::option::of((prop::sample::select(&NAMED[..]), scalar())),
        any::<bool>(),
    )
        .prop_map(|(named, first)| {
            let mut m = Map::new();
            let pad = json!((0..60).collect::<Vec<u32>>());
            match named {
                Some((k, v)) if first => {
                    m.insert(k.to_string(), v);
                    m.insert("p".into(), pad);
                }
                Some((k, v)) => {
                    m.insert("p".into(), pad);
                    m.insert(k.to_string(), v);
                }
                None => {
                    m.insert("p".into(), pad);
                }
            }
            Value::Object(m)
        })
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![4 => scalar(), 1 => padding()].prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(&KEYS[..]), inner), 0..4).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

fn event() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(&["s1", "s2"][..]),
        prop::option::of(prop::sample::select(&STRS[..])),
        prop::option::of(scalar()),
        prop::collection::vec((prop::sample::select(&KEYS[..]), value()), 0..4),
        0u8..10,
        // A large attribute no rule names, first or last.
        prop::option::of((any::<bool>(), padding())),
    )
        .prop_map(|(src, ty, subj, data, shape, ext)| {
            let mut e = Map::new();
            if let Some((true, v)) = &ext {
                e.insert("ext".into(), v.clone());
            }
            e.insert("specversion".into(), json!("1.0"));
            e.insert("source".into(), json!(src));
            if let Some(t) = ty {
                e.insert("type".into(), json!(t));
            }
            if let Some(s) = subj {
                e.insert("subject".into(), s);
            }
            let d: Map<String, Value> = data.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            // Mostly an object; sometimes data of another type, or none.
            match shape {
                0 => {}
                1 => {
                    e.insert("data".into(), Value::Array(vec![Value::Object(d)]));
                }
                _ => {
                    e.insert("data".into(), Value::Object(d));
                }
            }
            if let Some((false, v)) = ext {
                e.insert("ext".into(), v);
            }
            Value::Object(e)
        })
}

fn strings() -> impl Strategy<Value = Value> {
    prop::collection::vec(prop::sample::select(&STRS[..]), 1..3).prop_map(|v| json!(v))
}

fn numbers() -> impl Strategy<Value = Value> {
    prop::collection::vec(num_value(), 1..3).prop_map(Value::Array)
}

fn condition() -> impl Strategy<Value = Value> {
    let s_ops = prop::sample::select(
        &[
            "StringIn",
            "StringNotIn",
            "StringStartsWith",
            "StringNotStartsWith",
            "StringEndsWith",
            "StringNotEndsWith",
        ][..],
    );
    let cmp_ops = prop::sample::select(
        &[
            "NumberLessThan",
            "NumberNotLessThan",
            "NumberGreaterThan",
            "NumberNotGreaterThan",
        ][..],
    );
    let range = (num_value(), num_value()).prop_map(|(a, b)| {
        let (x, y) = (a.as_f64().unwrap(), b.as_f64().unwrap());
        if x <= y {
            json!([a, b])
        } else {
            json!([b, a])
        }
    });
    prop_oneof![
        (s_ops, strings()).prop_map(|(op, v)| json!({"op": op, "values": v})),
        (
            prop::sample::select(&["NumberIn", "NumberNotIn"][..]),
            numbers()
        )
            .prop_map(|(op, v)| json!({"op": op, "values": v})),
        (cmp_ops, num_value()).prop_map(|(op, v)| json!({"op": op, "value": v})),
        (
            prop::sample::select(&["NumberInRange", "NumberNotInRange"][..]),
            prop::collection::vec(range, 1..3)
        )
            .prop_map(|(op, v)| json!({"op": op, "values": v})),
        prop::sample::select(&["IsNull", "IsNotNull", "IsTrue", "IsNotTrue"][..])
            .prop_map(|op| json!({"op": op})),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    (prop::collection::vec(condition(), 1..4), any::<bool>()).prop_map(|(c, and)| {
        if and {
            json!({"and": c})
        } else {
            Value::Array(c)
        }
    })
}

fn rule() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(prop::sample::select(&["s1", "s2"][..]), 1..3),
        prop::option::of(leaf()),
        prop::option::of(leaf()),
        prop::collection::vec(
            (
                prop::collection::vec(prop::sample::select(&KEYS[..]), 1..4),
                leaf(),
            ),
            0..4,
        ),
    )
        .prop_map(|(src, ty, subj, fields)| {
            let mut r = json!({"source": [{"op": "StringIn", "values": src}]});
            if let Some(t) = ty {
                r["type"] = t;
            }
            if let Some(s) = subj {
                r["subject"] = s;
            }
            let mut data = Map::new();
            for (path, l) in fields {
                insert_path(&mut data, &path, l);
            }
            if !data.is_empty() {
                r["data"] = Value::Object(data);
            }
            r
        })
}

/// Inserts a leaf along `path` unless it collides with an existing leaf.
fn insert_path(map: &mut Map<String, Value>, path: &[&str], leaf: Value) {
    let k = path[0];
    if path.len() == 1 {
        // A lone "and" key holding an array would read as an and-block.
        let lone_and = k == "and" && map.is_empty();
        if !map.contains_key(k) && !lone_and {
            map.insert(k.to_string(), leaf);
        }
        return;
    }
    let e = map.entry(k.to_string()).or_insert_with(|| json!({}));
    if let Value::Object(m) = e {
        if !(m.len() == 1 && m.get("and").is_some_and(Value::is_array)) {
            insert_path(m, &path[1..], leaf);
            // An inner node left holding only "and": [...] would read as an and-block.
            if m.is_empty() || (m.len() == 1 && m.get("and").is_some_and(Value::is_array)) {
                map.remove(k);
            }
        }
    }
}

/// A rule's own part, laid over a shared prefix rule: a `type`/`subject` leaf replaces the
/// prefix's, data leaves are added beside its own.
type Tail = (
    Option<Value>,
    Option<Value>,
    Vec<(Vec<&'static str>, Value)>,
);

fn tail() -> impl Strategy<Value = Tail> {
    (
        prop::option::of(leaf()),
        prop::option::of(leaf()),
        prop::collection::vec(
            (
                prop::collection::vec(prop::sample::select(&KEYS[..]), 1..4),
                leaf(),
            ),
            0..3,
        ),
    )
}

/// Many rules built from a few shared prefixes (same `source`, often the same `type`,
/// `subject` or data conditions) that differ in their tails, so compiled conditions, specs and
/// anchors are shared by many rules at once.
fn shared_prefix_rules() -> impl Strategy<Value = Vec<Value>> {
    (
        prop::collection::vec(rule(), 1..4),
        prop::collection::vec((0usize..4, tail()), 8..48),
    )
        .prop_map(|(prefixes, tails)| {
            tails
                .into_iter()
                .map(|(p, (ty, subj, fields))| {
                    let mut r = prefixes[p % prefixes.len()].clone();
                    if let Some(t) = ty {
                        r["type"] = t;
                    }
                    if let Some(s) = subj {
                        r["subject"] = s;
                    }
                    let mut data = r
                        .get("data")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    for (path, l) in fields {
                        insert_path(&mut data, &path, l);
                    }
                    if !data.is_empty() {
                        r["data"] = Value::Object(data);
                    }
                    r
                })
                .collect()
        })
}

/// Compiles the valid ones of `rules` and checks every event against the reference, on
/// compact and pretty bytes.
fn check_against_reference(rules: &[Value], events: &[Value]) -> Result<(), TestCaseError> {
    let mut b = MatcherBuilder::new();
    let mut kept = Vec::new();
    for r in rules {
        // Generated rules may break V7 and the like; skip those.
        if let Ok(f) = parse_filter(r, true) {
            b.add_filter(f.clone());
            kept.push((r.clone(), f));
        }
    }
    let m = b.build();
    for ev in events {
        let expect: Vec<usize> = kept
            .iter()
            .enumerate()
            .filter(|(_, (r, _))| common::reference::matches(r, ev))
            .map(|(i, _)| i)
            .collect();
        let compact = serde_json::to_vec(ev).unwrap();
        if std::env::var("PROP_STATS").is_ok() {
            eprintln!("STAT rules={} matched={}", kept.len(), expect.len());
        }
        prop_assert_eq!(&m.matches(&compact), &expect, "compact {}", ev);
        let pretty = serde_json::to_vec_pretty(ev).unwrap();
        prop_assert_eq!(&m.matches(&pretty), &expect, "pretty {}", ev);
        for (i, (_, f)) in kept.iter().enumerate() {
            prop_assert_eq!(eval_filter(f, ev).is_ok(), expect.contains(&i));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn compiled_matches_reference(
        rules in prop::collection::vec(rule(), 1..8),
        events in prop::collection::vec(event(), 1..10),
    ) {
        check_against_reference(&rules, &events)?;
    }

    #[test]
    fn shared_prefixes_match_reference(
        rules in shared_prefix_rules(),
        events in prop::collection::vec(event(), 1..10),
    ) {
        check_against_reference(&rules, &events)?;
    }

    /// A field that is also a path prefix (`data.a` and `data.a.b`) holding arrays that mix
    /// scalars, objects with `b`, and large unnamed members after which the scanner may stop
    /// early: later candidates of `data.a` must still count.
    #[test]
    fn early_stop_keeps_later_candidates(
        leaves in (leaf(), leaf()),
        elems in prop::collection::vec(
            prop_oneof![
                3 => scalar(),
                2 => padding(),
                1 => scalar().prop_map(|v| json!({"b": v})),
                1 => prop::collection::vec(scalar(), 0..3).prop_map(Value::Array),
            ],
            0..6,
        ),
        after in prop::option::of(scalar()),
    ) {
        let rules = [
            json!({"source": [{"op": "StringIn", "values": ["s1"]}], "data": {"a": leaves.0}}),
            json!({"source": [{"op": "StringIn", "values": ["s1"]}],
                   "data": {"a": {"b": leaves.1}}}),
        ];
        let mut data = Map::new();
        data.insert("a".into(), Value::Array(elems));
        if let Some(v) = after {
            data.insert("c".into(), v);
        }
        let ev = json!({"specversion": "1.0", "source": "s1", "data": data});
        check_against_reference(&rules, &[ev])?;
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200), r in rule()) {
        let mut b = MatcherBuilder::new();
        if b.add_rule(&r, true).is_ok() {
            let m = b.build();
            let _ = m.matches(&bytes);
        }
    }

    /// JSON-like garbage behind a member no rule names, long enough for the scanner to skip
    /// it word by word and to look for a place to stop early.
    #[test]
    fn skipped_garbage_never_panics(
        bytes in prop::collection::vec(
            prop::sample::select(&b"{}[]\",:\\ a1\"source\"\"a\""[..]),
            0..400,
        ),
        r in rule(),
    ) {
        let mut b = MatcherBuilder::new();
        if b.add_rule(&r, true).is_ok() {
            let m = b.build();
            let heads: [&[u8]; 2] = [
                br#"{"source": "s1", "x": {"#,
                br#"{"source": "s1", "data": {"a": [1, {"#,
            ];
            for head in heads {
                let mut event = head.to_vec();
                event.extend_from_slice(&[b' '; 130]);
                event.extend_from_slice(&bytes);
                let _ = m.matches(&event);
            }
        }
    }
}
