//! The `rules test` report: which events a filter matches and, for the others, the first
//! false condition. Shared by `openeg rules test` and `POST /openeg/v1/rules/test`.

use crate::filter::{eval::eval_filter, parse_filter};
use crate::matcher::MatcherBuilder;
use crate::RuleError;
use serde_json::{json, Value};

/// Tests `filter` against each of `events` (CloudEvent JSON objects).
///
/// The filter is validated as a subscription filter (`source` required); an invalid
/// filter returns the [`RuleError`] the control plane reports as `EG.00513004`. Otherwise the
/// result is `{"results": [{"index": i, "matched": bool, "reason": "..."}, ...]}` in event
/// order, where `reason` is `"matched"` or names the first false matching field, its conditions
/// and the value found. Matching uses the compiled matcher; the reason comes from the direct
/// evaluator (the two are kept equal by the crate's property tests).
pub fn test_events(filter: &Value, events: &[Value]) -> Result<Value, RuleError> {
    let parsed = parse_filter(filter, true)?;
    let mut b = MatcherBuilder::new();
    b.add_filter(parsed.clone());
    let m = b.build();
    let results: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(i, ev)| {
            let matched = !m.matches_value(ev).is_empty();
            let reason = if matched {
                "matched".to_string()
            } else if !ev.is_object() {
                "the event is not a JSON object".to_string()
            } else {
                eval_filter(&parsed, ev)
                    .err()
                    .unwrap_or_else(|| "no match".to_string())
            };
            json!({"index": i, "matched": matched, "reason": reason})
        })
        .collect();
    Ok(json!({ "results": results }))
}
