//! The filter-rule worked examples (R1–R26) through the compiled matcher, the direct
//! evaluator and the independent reference; rejected rules through validation, each with
//! the reason its message must give.

mod common;

use openeg_rules::filter::eval::eval_filter;
use openeg_rules::{parse_filter, test_events, validate_filter, MatcherBuilder};
use serde_json::{json, Value};

fn base() -> Value {
    json!({"id": "4b26115b-778e-11ec-0001", "specversion": "1.0", "source": "HC.OBS",
     "type": "object:put", "datacontenttype": "application/json", "subject": "xxx.jpg",
     "time": "2022-01-17T12:07:00.955Z", "data": {"name": "test01", "state": "enable"}})
}

fn with_data(extra: Value) -> Value {
    let mut e = base();
    for (k, v) in extra.as_object().unwrap() {
        e["data"][k] = v.clone();
    }
    e
}

fn s() -> Value {
    json!([{"op": "StringIn", "values": ["HC.OBS"]}])
}

fn rule(extra: Value) -> Value {
    let mut r = json!({"source": s()});
    for (k, v) in extra.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

fn check(name: &str, event: Value, r: Value, expect: bool) {
    let f = parse_filter(&r, true).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut b = MatcherBuilder::new();
    b.add_filter(f.clone());
    let m = b.build();
    let compiled = !m.matches(event.to_string().as_bytes()).is_empty();
    assert_eq!(compiled, expect, "{name}: compiled matcher");
    assert_eq!(
        eval_filter(&f, &event).is_ok(),
        expect,
        "{name}: direct evaluator"
    );
    assert_eq!(
        common::reference::matches(&r, &event),
        expect,
        "{name}: reference"
    );
}

#[test]
fn worked_examples() {
    let cases: Vec<(&str, Value, Value, bool)> = vec![
        ("R1", base(), rule(json!({})), true),
        (
            "R2",
            with_data(json!({"age": 10})),
            rule(json!({"data": {"age": [{"op": "NumberIn", "values": [10]}]}})),
            true,
        ),
        (
            "R3",
            base(),
            rule(json!({"type": [{"op": "StringNotIn", "values": ["object:get"]}]})),
            true,
        ),
        (
            "R4",
            {
                let mut e = base();
                e["type"] = json!("object:get");
                e
            },
            rule(json!({"type": [{"op": "StringNotIn", "values": ["object:get"]}]})),
            false,
        ),
        (
            "R5",
            base(),
            rule(json!({"subject": [{"op": "StringStartsWith", "values": ["xxx"]}]})),
            true,
        ),
        (
            "R6",
            base(),
            rule(json!({"subject": [{"op": "StringEndsWith", "values": [".png", ".jpg"]}]})),
            true,
        ),
        (
            "R7",
            with_data(json!({"size": 10})),
            rule(json!({"data": {"size": [{"op": "NumberLessThan", "value": 20}]}})),
            true,
        ),
        (
            "R8",
            with_data(json!({"size": 10})),
            rule(json!({"data": {"size": [{"op": "NumberNotLessThan", "value": 2}]}})),
            true,
        ),
        (
            "R9",
            with_data(json!({"size": null})),
            rule(json!({"data": {"size": [{"op": "IsNull"}], "age": [{"op": "IsNull"}]}})),
            true,
        ),
        (
            "R10",
            with_data(json!({"size": null})),
            rule(json!({"data": {"name": [{"op": "IsNotNull"}], "size": [{"op": "IsNotNull"}]}})),
            false,
        ),
        (
            "R11",
            with_data(json!({"paid": true})),
            rule(json!({"data": {"paid": [{"op": "IsTrue"}]}})),
            true,
        ),
        (
            "R12",
            with_data(json!({"paid": false})),
            rule(json!({"data": {"paid": [{"op": "IsNotTrue"}]}})),
            true,
        ),
        (
            "R13",
            base(),
            rule(json!({"data": {"paid": [{"op": "IsNotTrue"}]}})),
            false,
        ),
        (
            "R14",
            with_data(json!({"amount": 20})),
            rule(json!({"data": {"amount": [{"op": "NumberInRange", "values": [[10, 20]]}]}})),
            true,
        ),
        (
            "R15",
            with_data(json!({"amount": 25})),
            rule(
                json!({"data": {"amount": [{"op": "NumberNotInRange", "values": [[10, 20], [30, 40]]}]}}),
            ),
            true,
        ),
        (
            "R16",
            with_data(json!({"tags": ["red", "blue"]})),
            rule(json!({"data": {"tags": [{"op": "StringIn", "values": ["blue"]}]}})),
            true,
        ),
        (
            "R17",
            with_data(json!({"tags": ["red", "blue"]})),
            rule(json!({"data": {"tags": [{"op": "StringNotIn", "values": ["blue"]}]}})),
            false,
        ),
        (
            "R18",
            base(),
            rule(json!({"data": {"region": [{"op": "StringNotIn", "values": ["cn"]}]}})),
            false,
        ),
        (
            "R19",
            base(),
            rule(
                json!({"data": {"region": [{"op": "IsNull"}, {"op": "StringNotIn", "values": ["cn"]}]}}),
            ),
            true,
        ),
        (
            "R20",
            with_data(
                json!({"geometry": {"coordinates": [[[-122.5, 37.80, 0.0], [-122.4, 37.9, 0.0]]]}}),
            ),
            rule(
                json!({"data": {"geometry": {"coordinates": [{"op": "NumberInRange", "values": [[37.8, 37.805]]}]}}}),
            ),
            true,
        ),
        (
            "R21",
            {
                let mut e = base();
                e["subject"] = json!("orders/8.xml");
                e
            },
            rule(
                json!({"subject": {"and": [{"op": "StringStartsWith", "values": ["orders/"]}, {"op": "StringEndsWith", "values": [".json"]}]}}),
            ),
            false,
        ),
        (
            "R22",
            with_data(json!({"order": {"amount": 150}, "region": "ap"})),
            rule(
                json!({"data": {"order": {"amount": [{"op": "NumberGreaterThan", "value": 100}]}, "region": [{"op": "StringIn", "values": ["eu", "us"]}]}}),
            ),
            false,
        ),
        (
            "R23",
            with_data(json!({"age": "10"})),
            rule(json!({"data": {"age": [{"op": "NumberIn", "values": [10]}]}})),
            false,
        ),
        (
            "R24",
            with_data(json!({"items": [{"sku": "a"}, {"sku": "b"}]})),
            rule(json!({"data": {"items": {"sku": [{"op": "StringIn", "values": ["b"]}]}}})),
            true,
        ),
        (
            "R25",
            {
                let mut e = base();
                e["source"] = json!("HC.SMN");
                e
            },
            rule(json!({})),
            false,
        ),
        (
            "R26",
            with_data(json!({"amount": 100})),
            rule(json!({"data": {"amount": [{"op": "NumberGreaterThan", "value": 100}]}})),
            false,
        ),
    ];
    for (name, event, r, expect) in cases {
        check(name, event, r, expect);
    }
}

#[test]
fn and_block_positive() {
    let mut e = base();
    e["subject"] = json!("orders/8.json");
    check(
        "and-block true",
        e,
        rule(
            json!({"subject": {"and": [{"op": "StringStartsWith", "values": ["orders/"]}, {"op": "StringEndsWith", "values": [".json"]}]}}),
        ),
        true,
    );
}

fn rejected(r: Value, needle: &str) {
    let e = validate_filter(&r, true).expect_err(&format!("should reject {r}"));
    assert!(
        e.to_string().contains(needle),
        "{r}: error {e} does not mention {needle}"
    );
}

#[test]
fn rejected_rules() {
    rejected(
        json!({"type": [{"op": "StringIn", "values": ["t"]}]}),
        "must contain source",
    );
    rejected(
        json!({"source": [{"op": "StringStartsWith", "values": ["HC"]}]}),
        "source accepts only the StringIn operator",
    );
    rejected(
        rule(json!({"id": [{"op": "StringIn", "values": ["x"]}]})),
        "unknown top-level key",
    );
    rejected(
        rule(json!({"data": {"k": [{"op": "StringLike", "values": ["x"]}]}})),
        "unknown operator",
    );
    let c = json!({"op": "IsNull"});
    rejected(
        rule(json!({"data": {"k": [c, c, c, c, c, c]}})),
        "a condition list or and-block holds 1 to 5",
    );
    rejected(
        rule(json!({"data": {"k": [{"op": "StringIn", "values": "x"}]}})),
        "needs values to be an array",
    );
    rejected(
        rule(json!({"data": {"a": {"b": {"c": {"d": {"e": {"f": [{"op": "IsNull"}]}}}}}}})),
        "at most 5 levels below data",
    );
    rejected(
        rule(json!({"data": {"a": [c], "b": [c], "c": [c], "d": [c], "e": [c], "f": [c]}})),
        "matching fields",
    );
    rejected(
        rule(json!({"data": {"n": [{"op": "NumberInRange", "values": [[5, 1]]}]}})),
        "range has low 5 > high 1",
    );
    rejected(
        rule(json!({"data": {"n": [{"op": "NumberLessThan"}]}})),
        "needs value",
    );
    // Further validation rules.
    rejected(json!([1]), "the filter rule must be a JSON object");
    rejected(
        json!({"source": {"and": [{"op": "StringIn", "values": ["a"]}]}}),
        "source must be a condition list using StringIn",
    );
    rejected(rule(json!({"data": []})), "data must be a JSON object");
    rejected(rule(json!({"data": {"k": []}})), "0 conditions given");
    rejected(
        rule(json!({"data": {"k": [{"op": "IsNull", "x": 1}]}})),
        "unknown condition key",
    );
    rejected(
        rule(json!({"data": {"k": [{"op": "stringin", "values": ["x"]}]}})),
        "unknown operator",
    );
    rejected(
        rule(json!({"data": {"k": [{"op": "NumberIn", "values": ["1"]}]}})),
        "values must be numbers",
    );
    rejected(
        rule(json!({"data": {"k": [{"op": "StringIn", "values": []}]}})),
        "non-empty",
    );
    rejected(
        rule(json!({"data": {"k": [{"op": "NumberInRange", "values": [[1]]}]}})),
        "[low, high] number pairs",
    );
    rejected(
        rule(json!({"data": {"k": [{"op": "NumberLessThan", "values": [1, 2]}]}})),
        "exactly one number",
    );
    rejected(
        rule(json!({"type": "x"})),
        "must be a condition list [...] or an and-block",
    );
    let long: Vec<String> = (0..300).map(|i| format!("value-{i}")).collect();
    rejected(
        rule(json!({"data": {"k": [{"op": "StringIn", "values": long}]}})),
        "bytes compact, more than 2048",
    );
    // Error paths name the key.
    let e =
        validate_filter(&rule(json!({"data": {"a": {"b": [{"op": "Nope"}]}}})), true).unwrap_err();
    assert_eq!(e.path, "data.a.b[0].op");
}

#[test]
fn accepted_variants() {
    let ok = |r: Value| validate_filter(&r, true).unwrap_or_else(|e| panic!("{r}: {e}"));
    ok(rule(json!({"data": {}})));
    ok(rule(
        json!({"data": {"a": {"b": {"c": {"d": {"e": [{"op": "IsNull"}]}}}}}}),
    ));
    ok(rule(
        json!({"data": {"n": [{"op": "NumberLessThan", "values": [3]}]}}),
    ));
    ok(rule(
        json!({"data": {"n": [{"op": "IsTrue", "values": ["ignored"]}]}}),
    ));
    ok(rule(json!({"data": {"a.b": [{"op": "IsNull"}]}})));
    // Streams: source optional and unrestricted.
    validate_filter(&json!({"data": {"k": [{"op": "IsNull"}]}}), false).unwrap();
    validate_filter(
        &json!({"source": [{"op": "StringStartsWith", "values": ["a"]}]}),
        false,
    )
    .unwrap();
    assert!(validate_filter(&json!({"data": {"k": [{"op": "IsNull"}]}}), true).is_err());
}

#[test]
fn literal_dot_key_and_duplicates() {
    let r = rule(json!({"data": {"a.b": [{"op": "StringIn", "values": ["x"]}]}}));
    check(
        "dotted key",
        with_data(json!({"a.b": "x"})),
        r.clone(),
        true,
    );
    check(
        "dotted key not a path",
        with_data(json!({"a": {"b": "x"}})),
        r,
        false,
    );
    // Duplicate keys in an event: the last occurrence wins.
    let mut b = MatcherBuilder::new();
    b.add_rule(
        &rule(json!({"data": {"k": [{"op": "StringIn", "values": ["b"]}]}})),
        true,
    )
    .unwrap();
    let m = b.build();
    let ev = br#"{"source":"HC.OBS","data":{"k":"a","k":"b"}}"#;
    assert_eq!(m.matches(ev), vec![0]);
    let ev = br#"{"source":"HC.OBS","data":{"k":"b","k":"a"}}"#;
    assert!(m.matches(ev).is_empty());
}

#[test]
fn odd_events_never_panic() {
    let mut b = MatcherBuilder::new();
    b.add_rule(&rule(json!({"data": {"k": [{"op": "IsNull"}]}})), true)
        .unwrap();
    let m = b.build();
    for ev in [
        &b""[..],
        b"{",
        b"[",
        b"{\"source\":",
        b"{\"source\":\"HC.OBS\"",
        b"nul",
        b"{\"a\":\"\\u12\"}",
        b"\"\\",
        b"{\"source\":\"HC.OBS\",\"data\":{\"k\":[[[[",
        b"{}}",
    ] {
        assert!(
            m.matches(ev).is_empty(),
            "{:?}",
            String::from_utf8_lossy(ev)
        );
    }
    assert_eq!(m.matches(br#"{"source":"HC.OBS"}"#), vec![0]);
    assert_eq!(
        m.matches(br#" {"source" : "HC\u002eOBS" , "data": 5 } "#),
        vec![0]
    );
}

#[test]
fn test_events_report() {
    let f = rule(json!({"data": {"region": [{"op": "StringIn", "values": ["eu", "us"]}]}}));
    let r = test_events(
        &f,
        &[
            with_data(json!({"region": "eu"})),
            with_data(json!({"region": "ap"})),
            json!(1),
        ],
    )
    .unwrap();
    let res = r["results"].as_array().unwrap();
    assert_eq!(res[0]["matched"], json!(true));
    assert_eq!(res[1]["matched"], json!(false));
    let reason = res[1]["reason"].as_str().unwrap();
    assert!(
        reason.contains("data.region") && reason.contains("\"ap\""),
        "{reason}"
    );
    assert_eq!(res[2]["index"], json!(2));
    assert!(test_events(&json!({}), &[]).is_err());
}
