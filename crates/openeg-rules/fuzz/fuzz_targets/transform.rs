//! Arbitrary `value`/`template` pairs: validation and rendering must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use openeg_rules::{CompiledTransform, TransformUse};
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (value, template) = text.split_once('\u{0}').unwrap_or((&text, "${a}"));
    let t = json!({"type": "VARIABLE", "value": value, "template": template});
    for usage in [
        TransformUse::Payload,
        TransformUse::FunctionGraphPayload,
        TransformUse::Key,
    ] {
        if let Ok(c) = CompiledTransform::compile(&t, usage) {
            let ev =
                json!({"id": "1", "source": "s", "data": {"a": [1, {"b": "x\"y"}], "c": null}});
            let _ = c.render(&ev);
            let _ = c.render(&json!([]));
        }
    }
});
