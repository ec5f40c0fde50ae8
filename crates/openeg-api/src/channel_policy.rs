//! Cross-account publishing: may an account publish into a channel of another project?
//!
//! A channel accepts events from outside its own project only when its `cross_account` switch
//! is on **and** its `policy` allows the caller's account (IAM domain id). The policy is the
//! SDK's model: a map of statement name → `{Sid, Effect, Principal, Action, Resource}`, where
//! `Principal` maps names to `{"IAM": [account ids]}`.
//!
//! Evaluation (deny by default):
//! * a statement applies when its `Action` names publishing (`eg:channels:putEvents`, or a
//!   wildcard `*`, `eg:*`, `eg:channels:*`; a list of actions may be given), its `Principal`
//!   lists the account (or `*`), and its `Resource`, if given, names this channel
//!   (`urn:eg:<region>:<project_id>:channel:<channel name>`, any region, `*` parts match all);
//! * any applying `Deny` refuses; otherwise any applying `Allow` permits;
//! * a statement missing `Effect`, `Action` or `Principal` grants nothing.
//!
//! The same rule guards PutEvents from another project and HC.EG targets that forward into
//! another project's channel.

use serde_json::Value;

/// The action a statement must name to allow publishing.
pub const PUT_EVENTS_ACTION: &str = "eg:channels:putEvents";

/// Whether `account` (an IAM domain id) may publish into `channel` (the stored channel
/// document: `name`, `cross_account`, `policy`) of project `owner_project`.
pub fn allows_put_events(channel: &Value, owner_project: &str, account: &str) -> bool {
    if account.is_empty() || channel.get("cross_account") != Some(&Value::Bool(true)) {
        return false;
    }
    let Some(policy) = channel.get("policy").and_then(Value::as_object) else {
        return false;
    };
    let name = channel.get("name").and_then(Value::as_str).unwrap_or("");
    let mut allowed = false;
    for stmt in policy.values() {
        if !applies(stmt, owner_project, name, account) {
            continue;
        }
        match stmt.get("Effect").and_then(Value::as_str) {
            Some("Deny") => return false,
            Some("Allow") => allowed = true,
            _ => {}
        }
    }
    allowed
}

fn applies(stmt: &Value, project: &str, channel_name: &str, account: &str) -> bool {
    action_matches(stmt.get("Action"))
        && principal_matches(stmt.get("Principal"), account)
        && resource_matches(stmt.get("Resource"), project, channel_name)
}

fn action_matches(action: Option<&Value>) -> bool {
    let one =
        |a: &str| matches!(a, "*" | "eg:*" | "eg:*:*" | "eg:channels:*") || a == PUT_EVENTS_ACTION;
    match action {
        Some(Value::String(a)) => one(a),
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(one),
        _ => false,
    }
}

fn principal_matches(principal: Option<&Value>, account: &str) -> bool {
    let Some(p) = principal.and_then(Value::as_object) else {
        return false;
    };
    p.values()
        .filter_map(|v| v.get("IAM").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .any(|id| id == "*" || id == account)
}

fn resource_matches(resource: Option<&Value>, project: &str, channel_name: &str) -> bool {
    let r = match resource {
        None | Some(Value::Null) => return true,
        Some(Value::String(r)) => r.as_str(),
        Some(_) => return false,
    };
    if r == "*" {
        return true;
    }
    let parts: Vec<&str> = r.split(':').collect();
    let [urn, svc, _region, p, kind, name] = parts.as_slice() else {
        return false;
    };
    let is = |pat: &str, v: &str| pat == "*" || pat == v;
    *urn == "urn" && *svc == "eg" && is(p, project) && *kind == "channel" && is(name, channel_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn channel(cross: bool, policy: Value) -> Value {
        json!({"name": "orders", "cross_account": cross, "policy": policy})
    }

    fn allow(ids: &[&str]) -> Value {
        json!({"Sid": "allow_account_to_put_events", "Effect": "Allow",
               "Principal": {"p": {"IAM": ids}}, "Action": PUT_EVENTS_ACTION,
               "Resource": "urn:eg:cn-north-4:proj:channel:orders"})
    }

    #[test]
    fn allowed_account_only_with_the_switch_on() {
        let p = json!({"s1": allow(&["dom-a"])});
        assert!(allows_put_events(
            &channel(true, p.clone()),
            "proj",
            "dom-a"
        ));
        assert!(!allows_put_events(
            &channel(true, p.clone()),
            "proj",
            "dom-b"
        ));
        assert!(!allows_put_events(
            &channel(false, p.clone()),
            "proj",
            "dom-a"
        ));
        assert!(!allows_put_events(
            &json!({"name": "orders", "policy": p}),
            "proj",
            "dom-a"
        ));
        assert!(!allows_put_events(
            &channel(true, json!({})),
            "proj",
            "dom-a"
        ));
        assert!(!allows_put_events(
            &channel(true, json!({"s1": allow(&["dom-a"])})),
            "proj",
            ""
        ));
    }

    #[test]
    fn resource_must_name_this_channel_of_this_project() {
        let with = |r: Value| {
            let mut s = allow(&["dom-a"]);
            s["Resource"] = r;
            channel(true, json!({ "s": s }))
        };
        assert!(allows_put_events(&with(Value::Null), "proj", "dom-a"));
        assert!(allows_put_events(&with(json!("*")), "proj", "dom-a"));
        assert!(allows_put_events(
            &with(json!("urn:eg:any:proj:channel:*")),
            "proj",
            "dom-a"
        ));
        assert!(!allows_put_events(
            &with(json!("urn:eg:r:other:channel:orders")),
            "proj",
            "dom-a"
        ));
        assert!(!allows_put_events(
            &with(json!("urn:eg:r:proj:channel:billing")),
            "proj",
            "dom-a"
        ));
        assert!(!allows_put_events(&with(json!("garbage")), "proj", "dom-a"));
        assert!(!allows_put_events(&with(json!(7)), "proj", "dom-a"));
    }

    #[test]
    fn deny_wins_and_incomplete_statements_grant_nothing() {
        let mut deny = allow(&["dom-a"]);
        deny["Effect"] = json!("Deny");
        let p = json!({"a": allow(&["*"]), "d": deny});
        assert!(!allows_put_events(
            &channel(true, p.clone()),
            "proj",
            "dom-a"
        ));
        assert!(allows_put_events(&channel(true, p), "proj", "dom-b"));
        for missing in ["Effect", "Action", "Principal"] {
            let mut s = allow(&["dom-a"]);
            s.as_object_mut().unwrap().remove(missing);
            assert!(
                !allows_put_events(&channel(true, json!({ "s": s })), "proj", "dom-a"),
                "{missing}"
            );
        }
        let mut other_action = allow(&["dom-a"]);
        other_action["Action"] = json!("eg:channels:delete");
        assert!(!allows_put_events(
            &channel(true, json!({ "s": other_action })),
            "proj",
            "dom-a"
        ));
        let mut listed = allow(&["dom-a"]);
        listed["Action"] = json!(["eg:channels:get", "eg:channels:*"]);
        assert!(allows_put_events(
            &channel(true, json!({ "s": listed })),
            "proj",
            "dom-a"
        ));
    }
}
