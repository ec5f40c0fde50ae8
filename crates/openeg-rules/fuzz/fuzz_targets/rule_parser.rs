//! Arbitrary bytes as a filter rule: validation must never panic, and a rule it accepts must
//! compile and run against a few fixed events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use openeg_rules::{validate_filter, MatcherBuilder};

const EVENTS: [&[u8]; 3] = [
    br#"{"source":"HC.OBS","type":"object:put","subject":"xxx.jpg","data":{"name":"test01","n":[1,2.5,{"k":null}]}}"#,
    br#"{"source":"a","data":[{"a":1}]}"#,
    br#"[1,2]"#,
];

fuzz_target!(|data: &[u8]| {
    let Ok(rule) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for require_source in [true, false] {
        if validate_filter(&rule, require_source).is_ok() {
            let mut b = MatcherBuilder::new();
            b.add_rule(&rule, require_source)
                .expect("validated rule compiles");
            let m = b.build();
            for ev in EVENTS {
                let _ = m.matches(ev);
            }
        }
    }
});
