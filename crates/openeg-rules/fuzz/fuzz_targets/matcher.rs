//! A fixed rule set against arbitrary event bytes: the scanner must never panic, and on
//! well-formed events the compiled matcher must agree with the direct evaluator.
#![no_main]

use libfuzzer_sys::fuzz_target;
use openeg_rules::filter::eval::eval_filter;
use openeg_rules::{Matcher, MatcherBuilder};
use serde_json::json;
use std::sync::OnceLock;

fn matcher() -> &'static Matcher {
    static M: OnceLock<Matcher> = OnceLock::new();
    M.get_or_init(|| {
        let s = json!([{"op": "StringIn", "values": ["a", "b"]}]);
        let rules = [
            json!({"source": s}),
            json!({"source": s, "data": {"x": [{"op": "StringStartsWith", "values": ["p"]}, {"op": "NumberInRange", "values": [[1, 5]]}]}}),
            json!({"source": s, "data": {"x": {"y": [{"op": "StringNotEndsWith", "values": ["z"]}]}}}),
            json!({"source": s, "data": {"x": [{"op": "IsNull"}], "t": [{"op": "IsTrue"}]}}),
            json!({"source": s, "subject": {"and": [{"op": "IsNotNull"}, {"op": "NumberNotIn", "values": [3]}]}}),
            json!({"source": s, "type": [{"op": "NumberGreaterThan", "value": 2}, {"op": "StringIn", "values": [""]}]}),
        ];
        let mut b = MatcherBuilder::new();
        for r in &rules {
            b.add_rule(r, true).expect("valid");
        }
        b.build()
    })
}

fuzz_target!(|data: &[u8]| {
    let m = matcher();
    let got = m.matches(data);
    if let Ok(ev) = serde_json::from_slice::<serde_json::Value>(data) {
        let want: Vec<usize> = (0..m.rule_count())
            .filter(|&i| eval_filter(&m.filters()[i], &ev).is_ok())
            .collect();
        assert_eq!(got, want, "event {ev}");
    }
});
