//! Transform worked examples (T1–T14) and rejected definitions, each with the reason its
//! message must give.

use openeg_rules::{validate_transform, CompiledTransform, Rendered, TransformUse};
use serde_json::{json, Value};

fn base() -> Value {
    json!({"id": "4b26115b-73e-cf74a0001", "specversion": "1.0", "source": "HC.OBS", "type": "object:put",
     "datacontenttype": "application/json", "subject": "xxx.jpg", "time": "2022-01-17T12:07:48.955Z",
     "data": {"name": "test01", "state": "enable"}})
}

fn with(f: impl FnOnce(&mut Value)) -> Value {
    let mut e = base();
    f(&mut e);
    e
}

fn var(value: &str, template: &str) -> Value {
    json!({"type": "VARIABLE", "value": value, "template": template})
}

fn render(t: &Value, usage: TransformUse, ev: &Value) -> String {
    match CompiledTransform::compile(t, usage)
        .unwrap_or_else(|e| panic!("{t}: {e}"))
        .render(ev)
    {
        Rendered::Text(s) => s,
        Rendered::None => panic!("no output"),
    }
}

fn pay(t: &Value, ev: &Value) -> String {
    render(t, TransformUse::Payload, ev)
}

const T5_VALUE: &str = r#"{"contant_boolean": true,"contant_string": "constant","variable_string": "$.data.string","variable_json_object": "$.data.object"}"#;
const T5_TEMPLATE: &str = r#"{"contant_boolean": ${contant_boolean},"contant_string": "${contant_string!\"default\"}","variable_string": "${contant_boolean}","variable_json_object": ${variable_json_object!"null"}}"#;

#[test]
fn worked_examples() {
    let b = base();
    assert_eq!(
        pay(&var(r#"{"name":"$.data.name"}"#, "My name is ${name}"), &b),
        "My name is test01"
    ); // T1
    assert_eq!(
        render(
            &var(r#"{"name":"$.data.name"}"#, r#"{"name":"${name}"}"#),
            TransformUse::FunctionGraphPayload,
            &b
        ),
        r#"{"name":"test01"}"#
    ); // T2
    let t3 = pay(
        &json!({"type": "ORIGINAL", "value": "", "template": ""}),
        &b,
    );
    assert_eq!(serde_json::from_str::<Value>(&t3).unwrap(), b); // T3
    assert!(!t3.contains(": ") && !t3.contains(", "));
    assert_eq!(
        pay(
            &json!({"type": "CONSTANT", "value": r#"{"trigger":"obs"}"#}),
            &b
        ),
        r#"{"trigger":"obs"}"#
    ); // T4
    let t5 =
        with(|e| e["data"] = json!({"string": "hello", "object": {"k": 1, "tags": ["a", "b"]}}));
    assert_eq!(
        render(
            &var(T5_VALUE, T5_TEMPLATE),
            TransformUse::FunctionGraphPayload,
            &t5
        ),
        r#"{"contant_boolean": true,"contant_string": "constant","variable_string": "true","variable_json_object": {"k":1,"tags":["a","b"]}}"#
    );
    let t6 = with(|e| e["data"] = json!({"string": "hello"}));
    assert_eq!(
        pay(&var(T5_VALUE, T5_TEMPLATE), &t6),
        r#"{"contant_boolean": true,"contant_string": "constant","variable_string": "true","variable_json_object": null}"#
    );
    let t7 = with(|e| {
        e["source"] = json!("orders-app");
        e["subject"] = json!("orders/1.json");
        e["data"] = json!({"order": {"id": "o-1", "amount": 1000.5}, "region": "eu"});
    });
    assert_eq!(
        pay(
            &var(
                r#"{"oid":"$.data.order.id","amt":"$.data.order.amount","src":"$.source","subj":"$.subject"}"#,
                r#"{"order":"${oid}","amount":${amt},"source":"${src}","subject":"${subj}","kind":"demo"}"#
            ),
            &t7
        ),
        r#"{"order":"o-1","amount":1000.5,"source":"orders-app","subject":"orders/1.json","kind":"demo"}"#
    );
    assert_eq!(
        render(
            &var(
                r#"{"region":"$.data.region","id":"$.id"}"#,
                "${region}-${id}"
            ),
            TransformUse::Key,
            &t7
        ),
        "eu-4b26115b-73e-cf74a0001"
    ); // T8
    assert_eq!(
        pay(
            &var(
                r#"{"missing":"$.data.nope"}"#,
                r#"{"x":"${missing}","y":${missing!"0"}}"#
            ),
            &t7
        ),
        r#"{"x":"","y":0}"#
    ); // T9
    let t10 = with(|e| e["data"] = json!({"items": [{"sku": "a"}, {"sku": "b"}]}));
    assert_eq!(
        pay(
            &var(
                r#"{"skus":"$.data.items[*].sku","first":"$.data.items[0].sku"}"#,
                r#"{"skus":${skus},"first":"${first}"}"#
            ),
            &t10
        ),
        r#"{"skus":["a","b"],"first":"a"}"#
    );
    let t11 = with(|e| e["data"] = json!({"msg": "say \"hi\""}));
    assert_eq!(
        pay(&var(r#"{"m":"$.data.msg"}"#, r#"{"m":"${m}"}"#), &t11),
        r#"{"m":"say \"hi\""}"#
    ); // T11
    assert_eq!(
        pay(&var(r#"{"m":"$.data.msg"}"#, "Message: ${m}"), &t11),
        r#"Message: say "hi""#
    ); // T12
    let t13 = with(|e| e["data"] = json!({"object": {"k": 1}}));
    assert_eq!(
        pay(
            &var(r#"{"o":"$.data.object"}"#, r#"{"wrapped":"${o}"}"#),
            &t13
        ),
        r#"{"wrapped":"{\"k\":1}"}"#
    );
    assert_eq!(
        render(
            &json!({"type": "CONSTANT", "value": "order event"}),
            TransformUse::SmnSubject,
            &b
        ),
        "order event"
    ); // T14
}

#[test]
fn keys_and_odd_events() {
    let none = CompiledTransform::compile(&json!({"type": "NONE"}), TransformUse::Key).unwrap();
    assert_eq!(none.render(&base()), Rendered::None);
    let orig = CompiledTransform::compile(&json!({"type": "ORIGINAL"}), TransformUse::Key).unwrap();
    assert_eq!(orig.render(&base()), Rendered::None);
    // Odd events never panic; missing values render empty.
    let t = CompiledTransform::compile(
        &var(
            r#"{"a":"$.data[3].x","b":"$[*]","c":null,"d":1.5}"#,
            "${a}|${b!}|${c}|${d}|$x|${a!\"q\\\"\"}",
        ),
        TransformUse::Payload,
    )
    .unwrap();
    for ev in [json!(null), json!([1]), json!({"data": "s"}), json!("x")] {
        let _ = t.render(&ev);
    }
    assert_eq!(t.render_text(&json!({})).unwrap(), "|[]|null|1.5|$x|q\"");
    // Default with escaped delimiters, as written inside a JSON string.
    let t = var(r#"{"v":"$.data.nope"}"#, r#""${v!\"d\"}""#);
    assert_eq!(pay(&t, &base()), "\"d\"");
}

fn rejected(t: Value, usage: TransformUse, needle: &str) {
    let e = validate_transform(&t, usage).expect_err(&format!("should reject {t}"));
    assert!(e.to_string().contains(needle), "{t}: {e} lacks {needle}");
}

#[test]
fn rejected_definitions() {
    use TransformUse::*;
    rejected(json!({"type": "FOO"}), Payload, "type");
    rejected(var("[1,2]", "x"), Payload, "must be a JSON object string");
    rejected(
        var("not json", "x"),
        Payload,
        "must be a JSON object string",
    );
    rejected(
        var(r#"{"HC.name":"$.data.name"}"#, "${HC.name}"),
        Payload,
        "not start with HC.",
    );
    let long = "a".repeat(65);
    rejected(
        var(&format!(r#"{{"{long}":"$.data"}}"#), "x"),
        Payload,
        "be at most 64 characters",
    );
    let many: serde_json::Map<String, Value> =
        (0..101).map(|i| (format!("v{i}"), json!(1))).collect();
    rejected(
        var(&Value::Object(many).to_string(), "x"),
        Payload,
        "at most 100 are allowed",
    );
    rejected(
        var(r#"{"v":{"inner":"$.data"}}"#, "${v}"),
        Payload,
        "cannot be nested",
    );
    rejected(
        var(r#"{"v":"$.data"}"#, "${undefined}"),
        Payload,
        "undefined variable",
    );
    rejected(
        json!({"type": "VARIABLE", "value": r#"{"v":"$.data"}"#}),
        Payload,
        "VARIABLE needs a template",
    );
    rejected(
        json!({"type": "CONSTANT", "value": "not json"}),
        FunctionGraphPayload,
        "FunctionGraph payload must be a JSON object",
    );
    // More validation rules.
    rejected(
        var(r#"{"v":"$.data["}"#, "${v}"),
        Payload,
        "invalid JSONPath",
    );
    rejected(
        var(r#"{"v":"$.data"}"#, "${v"),
        Payload,
        "unclosed or malformed reference",
    );
    rejected(
        var(r#"{"v":"$.data"}"#, "${}"),
        Payload,
        "empty or invalid variable name",
    );
    rejected(
        var(r#"{"v":"$.data"}"#, ""),
        Payload,
        "template must not be empty",
    );
    rejected(
        var(r#"{"v":"$.data"}"#, "${v!\"x}"),
        Payload,
        "malformed default",
    );
    rejected(
        var(r#"{"v":"$.data"}"#, &"x".repeat(1025)),
        Payload,
        "template is longer than 1024",
    );
    rejected(
        var(r#"{"v":"$.data"}"#, "not json ${v}"),
        FunctionGraphPayload,
        "FunctionGraph template must render to a JSON object",
    );
    rejected(json!({"type": "CONSTANT"}), Payload, "value");
    rejected(json!({"type": "ORIGINAL"}), SmnSubject, "type");
    rejected(json!({"type": "NONE"}), Payload, "type");
    validate_transform(&json!({"type": "CONSTANT", "value": ""}), Payload).unwrap();
    validate_transform(
        &var(r#"{"v":"$.data"}"#, r#"{"a":${v},"b":"${v}"}"#),
        FunctionGraphPayload,
    )
    .unwrap();
}
