//! Target connections (ops 39–43).
//!
//! `Kind::Connection` records hold the `ConnectionInfo` wire document with secrets sealed, plus
//! the internal member `_instance_id` (the Kafka/RocketMQ instance id) for the `instance_id`
//! list filter. WEBHOOK connections are `CREATED` at once; KAFKA/ROCKETMQ connections start
//! `CREATING` and a background task checks that the first broker address accepts TCP
//! connections, then sets `CREATED` or `CREATE_FAILED` with `error_info` [dec].

use super::{get_or_404, pick};
use crate::error::ApiResult;
use crate::openapi::{paging, query, s, Op};
use crate::secrets::seal;
use crate::state::{AppState, Tenant};
use crate::util::{
    fmt_time, json_body, list_query, list_reply, new_id, no_content, now_ms, ok, Params, Query,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use openeg_api::connection::{self, ConnectionType};
use openeg_api::validate::NamePattern;
use openeg_api::EgError;
use openeg_engine::ResourceKind;
use openeg_store::{Document, Kind, QuotaCheck, StoreError};
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

/// Members of `ConnectionInfo` (plus the reference's `rocketmq_detail`), in wire order.
const INFO: &[&str] = &[
    "id",
    "name",
    "description",
    "status",
    "error_info",
    "vpc_id",
    "subnet_id",
    "agency",
    "flavor",
    "type",
    "kafka_detail",
    "rocketmq_detail",
    "created_time",
    "updated_time",
];

pub const CREATING: &str = "CREATING";
pub const CREATED: &str = "CREATED";
pub const CREATE_FAILED: &str = "CREATE_FAILED";

/// A connection still `CREATING` this long after its last change has lost its probe (e.g. a
/// restart); reading it starts a new one.
const STALE_CREATING_MS: i64 = 10_000;

/// Read-modify-write of connection records (handlers and probes) runs in the store's
/// exclusive section of this name, so a probe result and a concurrent update never overwrite
/// each other, on any node.
const WRITE_SECTION: &str = "connections";
/// (project, id) of connections with a probe running.
static PROBING: LazyLock<Mutex<HashSet<(String, String)>>> =
    LazyLock::new(|| Mutex::new(HashSet::new()));

pub fn ops() -> Vec<Op> {
    const T: &str = "Connections";
    let one = "/v1/{project_id}/connections/{connection_id}";
    let types = [
        ConnectionType::Webhook,
        ConnectionType::Kafka,
        ConnectionType::Rocketmq,
    ]
    .map(ConnectionType::as_str);
    let field = || s::max(connection::FIELD_MAX);
    let addr = || {
        s::doc(
            s::non_empty(connection::ADDRESS_MAX),
            "broker addresses host:port[,host:port...]",
        )
    };
    let kafka = s::obj(&[
        ("instance_id", field()),
        ("addr", addr()),
        (
            "security_protocol",
            s::one_of(connection::SECURITY_PROTOCOLS),
        ),
        ("enable_sasl_ssl", s::boolean()),
        ("user_name", field()),
        ("password", field()),
        ("acks", s::one_of(connection::ACKS)),
    ]);
    let rocketmq = s::obj(&[
        ("instance_id", field()),
        ("addr", addr()),
        ("use_tls", s::boolean()),
        ("enable_acl", s::boolean()),
        ("user_name", field()),
        ("password", field()),
    ]);
    let credentials = || s::obj(&[("user_name", field()), ("password", field())]);
    vec![
        Op::post("CreateConnection", "/v1/{project_id}/connections", create)
            .summary(T, "Create a target connection (WEBHOOK, KAFKA, ROCKETMQ)")
            .body(s::req(
                s::obj(&[
                    ("name", s::name(NamePattern::Mixed)),
                    ("description", s::max(connection::DESCRIPTION_MAX)),
                    ("vpc_id", s::non_empty(connection::VPC_MAX)),
                    ("subnet_id", s::non_empty(connection::VPC_MAX)),
                    ("type", s::one_of(&types)),
                    ("kafka_detail", kafka),
                    ("rocketmq_detail", rocketmq),
                ]),
                &["name", "vpc_id", "subnet_id"],
            ))
            .ok(info_schema()),
        Op::get("ListConnections", "/v1/{project_id}/connections", list)
            .summary(T, "List connections")
            .params(paging())
            .params([
                query("name", s::string()),
                query("fuzzy_name", s::string()),
                query("instance_id", s::string()),
            ])
            .ok(s::list(info_schema())),
        Op::put("UpdateConnection", one, update)
            .summary(
                T,
                "Update the description or broker credentials of a connection",
            )
            .body(s::obj(&[
                ("name", s::string()),
                ("description", s::max(connection::DESCRIPTION_MAX)),
                ("kafka_detail", credentials()),
                ("rocketmq_detail", credentials()),
            ]))
            .ok(info_schema()),
        Op::get("ShowDetailOfConnection", one, show)
            .summary(T, "Show a connection")
            .ok(info_schema()),
        Op::delete("DeleteConnection", one, delete)
            .summary(T, "Delete a connection no target uses")
            .errors(&[409]),
    ]
}

/// `ConnectionInfo` (secrets masked).
fn info_schema() -> Value {
    s::req(
        s::obj(&[
            ("id", s::string()),
            ("name", s::string()),
            ("description", s::string()),
            ("status", s::one_of(&[CREATING, CREATED, CREATE_FAILED])),
            ("error_info", s::error_info()),
            ("vpc_id", s::string()),
            ("subnet_id", s::string()),
            ("agency", s::string()),
            (
                "flavor",
                s::obj(&[
                    ("name", s::string()),
                    ("concurrency_type", s::one_of(&["shared", "exclusive"])),
                    ("concurrency", s::int()),
                    ("bandwidth_type", s::one_of(&["shared", "exclusive"])),
                ]),
            ),
            ("type", s::string()),
            ("kafka_detail", s::any_object()),
            ("rocketmq_detail", s::any_object()),
            ("created_time", s::time()),
            ("updated_time", s::time()),
        ]),
        &["id", "name", "status"],
    )
}

fn body_str<'a>(rec: &'a Document, key: &str) -> &'a str {
    rec.body.get(key).and_then(Value::as_str).unwrap_or("")
}

fn conn_type(rec: &Document) -> ConnectionType {
    ConnectionType::parse(body_str(rec, "type")).unwrap_or(ConnectionType::Webhook)
}

async fn create(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    body: Bytes,
) -> ApiResult<Response> {
    let v = json_body(&body)?;
    let req = connection::parse_create(&v)?;
    let probe = req.conn_type != ConnectionType::Webhook;
    let now = now_ms();
    let id = new_id();
    let mut doc = Map::new();
    doc.insert("id".into(), id.clone().into());
    doc.insert("name".into(), req.name.clone().into());
    doc.insert("description".into(), req.description.clone().into());
    doc.insert(
        "status".into(),
        (if probe { CREATING } else { CREATED }).into(),
    );
    doc.insert("error_info".into(), json!({}));
    doc.insert("vpc_id".into(), req.vpc_id.clone().into());
    doc.insert("subnet_id".into(), req.subnet_id.clone().into());
    doc.insert("agency".into(), "EG_TRUST".into());
    // OpenEG delivers from a shared pool; the numbers describe no reserved capacity [dec].
    doc.insert(
        "flavor".into(),
        json!({"name": "default", "concurrency_type": "shared", "concurrency": 100, "bandwidth_type": "shared"}),
    );
    doc.insert("type".into(), req.conn_type.as_str().into());
    if let Some(d) = &req.kafka_detail {
        doc.insert("kafka_detail".into(), Value::Object(d.clone()));
    }
    if let Some(d) = &req.rocketmq_detail {
        doc.insert("rocketmq_detail".into(), Value::Object(d.clone()));
    }
    doc.insert("created_time".into(), fmt_time(now).into());
    doc.insert("updated_time".into(), fmt_time(now).into());
    if let Some(i) = req.instance_id() {
        doc.insert("_instance_id".into(), i.into());
    }
    let mut body = Value::Object(doc);
    seal(&mut body, None, &st.secrets)?;

    if st
        .store
        .get_by_name(&t.project_id, Kind::Connection, &req.name)
        .await?
        .is_some()
    {
        return Err(StoreError::Duplicate.into());
    }
    let rec = Document {
        project_id: t.project_id.clone(),
        kind: Kind::Connection,
        id,
        name: req.name.clone(),
        parent_id: None,
        created_at: now,
        updated_at: now,
        body,
        refs: Vec::new(),
    };
    let quota = QuotaCheck {
        quota: "CONNECTION",
        kind: Kind::Connection,
        parent_id: None,
        body_eq: None,
        max: st.cfg.quotas.connection,
    };
    st.store.insert(&rec, &[quota]).await?;
    if probe {
        spawn_probe(&st, &rec.project_id, &rec.id);
    }
    Ok(ok(pick(&rec.body, INFO)))
}

/// Starts the reachability probe of a connection unless one is running.
fn spawn_probe(st: &AppState, project_id: &str, id: &str) {
    let key = (project_id.to_string(), id.to_string());
    match PROBING.lock() {
        Ok(mut p) => {
            if !p.insert(key.clone()) {
                return;
            }
        }
        Err(_) => return,
    }
    let st = st.clone();
    tokio::spawn(async move {
        probe(&st, &key.0, &key.1).await;
        if let Ok(mut p) = PROBING.lock() {
            p.remove(&key);
        }
    });
}

/// Checks the connection against its broker (a real request of that broker's protocol, see
/// `openeg_connectors::check`) and records the outcome.
async fn probe(st: &AppState, project_id: &str, id: &str) {
    let rec = match st.store.get(project_id, Kind::Connection, id).await {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(connection = id, error = %e, "connection probe: cannot load connection");
            return;
        }
    };
    let mut doc = rec.body.clone();
    st.secrets.reveal_json(&mut doc);
    let failure = openeg_connectors::check::check_connection(&doc).await.err();
    let _guard = match st.store.exclusive(WRITE_SECTION).await {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(connection = id, error = %e, "connection probe: cannot store the result");
            return;
        }
    };
    let mut rec = match st.store.get(project_id, Kind::Connection, id).await {
        Ok(Some(r)) if body_str(&r, "status") == CREATING => r,
        _ => return,
    };
    let Value::Object(doc) = &mut rec.body else {
        return;
    };
    let now = now_ms();
    match &failure {
        None => {
            doc.insert("status".into(), CREATED.into());
            doc.insert("error_info".into(), json!({}));
        }
        Some(detail) => {
            doc.insert("status".into(), CREATE_FAILED.into());
            doc.insert(
                "error_info".into(),
                json!({"error_code": "EG.00511000", "error_msg": "internal server error", "error_detail": detail}),
            );
        }
    }
    doc.insert("updated_time".into(), fmt_time(now).into());
    rec.updated_at = now;
    if let Err(e) = st.store.update(&rec).await {
        tracing::warn!(connection = id, error = %e, "connection probe: cannot store the result");
    }
}

/// Restarts lost probes of connections stuck in `CREATING`.
fn revive(st: &AppState, rec: &Document) {
    if body_str(rec, "status") == CREATING && now_ms() - rec.updated_at > STALE_CREATING_MS {
        spawn_probe(st, &rec.project_id, &rec.id);
    }
}

async fn list(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    q: Query,
) -> ApiResult<Response> {
    let paging = q.paging()?;
    let mut lq = list_query(&q, &paging);
    if let Some(i) = q.get("instance_id") {
        lq.body_eq.push(("_instance_id".into(), i.to_string()));
    }
    let (total, recs) = st.store.list(&t.project_id, Kind::Connection, &lq).await?;
    recs.iter().for_each(|r| revive(&st, r));
    Ok(list_reply(
        total,
        recs.iter().map(|r| pick(&r.body, INFO)).collect(),
    ))
}

async fn show(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
) -> ApiResult<Response> {
    let rec = get_or_404(&st, &t.project_id, Kind::Connection, p.get("connection_id")).await?;
    revive(&st, &rec);
    Ok(ok(pick(&rec.body, INFO)))
}

async fn update(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
    body: Bytes,
) -> ApiResult<Response> {
    let _guard = st.store.exclusive(WRITE_SECTION).await?;
    let mut rec = get_or_404(&st, &t.project_id, Kind::Connection, p.get("connection_id")).await?;
    let v = json_body(&body)?;
    let ctype = conn_type(&rec);
    let detail_key = ctype.detail_key();
    let stored_detail = detail_key
        .and_then(|k| rec.body.get(k))
        .and_then(Value::as_object);
    let req = connection::parse_update(&v, &rec.name, ctype, stored_detail)?;
    let Value::Object(mut doc) = rec.body.clone() else {
        return Err(EgError::internal().into());
    };
    if let Some(d) = req.description {
        doc.insert("description".into(), d.into());
    }
    if let (Some(key), Some(patch)) = (detail_key, req.kafka_patch.or(req.rocketmq_patch)) {
        let old = doc.get(key).cloned();
        let mut patch = Value::Object(patch);
        seal(&mut patch, old.as_ref(), &st.secrets)?;
        let mut merged = old.and_then(|o| o.as_object().cloned()).unwrap_or_default();
        if let Value::Object(pm) = patch {
            merged.extend(pm);
        }
        doc.insert(key.into(), Value::Object(merged));
    }
    let now = now_ms();
    doc.insert("updated_time".into(), fmt_time(now).into());
    rec.body = Value::Object(doc);
    rec.updated_at = now;
    if !st.store.update(&rec).await? {
        return Err(EgError::not_found("connection does not exist").into());
    }
    // Targets using it are built with its settings and secrets: they are built anew.
    st.resource_changed(ResourceKind::Connection, &rec.project_id, &rec.id)
        .await;
    Ok(ok(pick(&rec.body, INFO)))
}

async fn delete(
    State(st): State<AppState>,
    Extension(t): Extension<Tenant>,
    p: Params,
) -> ApiResult<Response> {
    let rec = get_or_404(&st, &t.project_id, Kind::Connection, p.get("connection_id")).await?;
    if body_str(&rec, "status") == CREATING {
        revive(&st, &rec);
        return Err(EgError::cannot_delete("the connection is still being created").into());
    }
    let users = st
        .store
        .referencing(&t.project_id, &format!("connection:{}", rec.id))
        .await?;
    if !users.is_empty() {
        let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).take(5).collect();
        return Err(EgError::conflict(format!(
            "connection is used by {} subscription(s): {}",
            users.len(),
            names.join(", ")
        ))
        .into());
    }
    st.store
        .delete(&t.project_id, Kind::Connection, &rec.id)
        .await?;
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ServerConfig;
    use crate::testing::{app, call, code, PROJECT};
    use openeg_store::secrets::SecretBox;

    fn kafka(addr: &str) -> Value {
        json!({"name": "k1", "vpc_id": "v", "subnet_id": "s", "type": "KAFKA",
               "kafka_detail": {"instance_id": "kafka-inst", "addr": addr, "enable_sasl_ssl": false,
                                "security_protocol": "SASL_PLAINTEXT", "user_name": "u", "password": "kafka-pw"}})
    }

    async fn settle(r: &axum::Router, id: &str) -> Value {
        for _ in 0..300 {
            let (_, v) = call(r, "GET", &format!("/v1/{{p}}/connections/{id}"), None).await;
            if v["status"] != CREATING {
                return v;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("connection {id} still CREATING");
    }

    #[tokio::test]
    async fn webhook_crud() {
        let (r, _) = app(ServerConfig::default()).await;
        let (s, v) = call(
            &r,
            "POST",
            "/v1/{p}/connections",
            Some(json!({"name": "hook", "vpc_id": "v", "subnet_id": "s", "type": {}})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "id",
                "name",
                "description",
                "status",
                "error_info",
                "vpc_id",
                "subnet_id",
                "agency",
                "flavor",
                "type",
                "created_time",
                "updated_time"
            ]
        );
        assert_eq!(
            (
                v["status"].as_str(),
                v["type"].as_str(),
                v["agency"].as_str()
            ),
            (Some(CREATED), Some("WEBHOOK"), Some("EG_TRUST"))
        );
        let id = v["id"].as_str().unwrap().to_string();
        let (s, u) = call(
            &r,
            "PUT",
            &format!("/v1/{{p}}/connections/{id}"),
            Some(json!({"description": "n"})),
        )
        .await;
        assert_eq!((s, u["description"].as_str()), (200, Some("n")));
        let (s, e) = call(
            &r,
            "PUT",
            &format!("/v1/{{p}}/connections/{id}"),
            Some(json!({"kafka_detail": {"password": "x"}})),
        )
        .await;
        assert_eq!((s, code(&e)), (400, "EG.00513000"));
        let (s, e) = call(
            &r,
            "POST",
            "/v1/{p}/connections",
            Some(json!({"name": "hook", "vpc_id": "v", "subnet_id": "s"})),
        )
        .await;
        assert_eq!((s, code(&e)), (400, "EG.00513001"));
        let (_, l) = call(&r, "GET", "/v1/{p}/connections?fuzzy_name=HOO", None).await;
        assert_eq!(l["total"], 1);
        let (s, _) = call(&r, "DELETE", &format!("/v1/{{p}}/connections/{id}"), None).await;
        assert_eq!(s, 204);
        let (s, e) = call(&r, "GET", &format!("/v1/{{p}}/connections/{id}"), None).await;
        assert_eq!((s, code(&e)), (404, "EG.00514001"));
    }

    #[tokio::test]
    async fn kafka_unreachable_fails_and_password_is_sealed() {
        let (r, st) = app(ServerConfig::default()).await;
        let (s, v) = call(
            &r,
            "POST",
            "/v1/{p}/connections",
            Some(kafka("127.0.0.1:9")),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["kafka_detail"]["password"], "******");
        assert_eq!(v["kafka_detail"]["acks"], "1");
        assert!(v.get("_instance_id").is_none());
        let id = v["id"].as_str().unwrap().to_string();
        let g = settle(&r, &id).await;
        assert_eq!(g["status"], CREATE_FAILED);
        assert_eq!(g["error_info"]["error_code"], "EG.00511000");
        let detail = g["error_info"]["error_detail"].as_str().unwrap();
        assert_eq!(detail, "127.0.0.1:9 unreachable");
        let stored = st
            .store
            .get(PROJECT, Kind::Connection, &id)
            .await
            .unwrap()
            .unwrap();
        let sealed = stored.body["kafka_detail"]["password"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(SecretBox::is_encrypted(&sealed));
        // instance_id filter
        let (_, l) = call(
            &r,
            "GET",
            "/v1/{p}/connections?instance_id=kafka-inst",
            None,
        )
        .await;
        assert_eq!(l["total"], 1);
        let (_, l) = call(&r, "GET", "/v1/{p}/connections?instance_id=nope", None).await;
        assert_eq!(l["total"], 0);
        // Update: the mask keeps the password, a new one replaces it; addr immutable.
        let path = format!("/v1/{{p}}/connections/{id}");
        let (s, u) = call(
            &r,
            "PUT",
            &path,
            Some(json!({"kafka_detail": {"user_name": "u2", "password": "******"}})),
        )
        .await;
        assert_eq!(
            (s, u["kafka_detail"]["user_name"].as_str()),
            (200, Some("u2")),
            "{u}"
        );
        let stored = st
            .store
            .get(PROJECT, Kind::Connection, &id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            stored.body["kafka_detail"]["password"].as_str(),
            Some(sealed.as_str())
        );
        let (s, _) = call(
            &r,
            "PUT",
            &path,
            Some(json!({"kafka_detail": {"password": "new-pw"}})),
        )
        .await;
        assert_eq!(s, 200);
        let stored = st
            .store
            .get(PROJECT, Kind::Connection, &id)
            .await
            .unwrap()
            .unwrap();
        let now = stored.body["kafka_detail"]["password"].as_str().unwrap();
        assert!(SecretBox::is_encrypted(now) && now != sealed);
        assert_eq!(st.secrets.decrypt(now).unwrap(), "new-pw");
        let (s, e) = call(
            &r,
            "PUT",
            &path,
            Some(json!({"kafka_detail": {"addr": "h:1"}})),
        )
        .await;
        assert_eq!((s, code(&e)), (400, "EG.00513000"));
        // Used by a subscription → 409.
        let sub = Document {
            project_id: PROJECT.into(),
            kind: Kind::Subscription,
            id: crate::util::new_id(),
            name: "sub".into(),
            parent_id: None,
            created_at: 0,
            updated_at: 0,
            body: json!({}),
            refs: vec![format!("connection:{id}")],
        };
        st.store.insert(&sub, &[]).await.unwrap();
        let (s, e) = call(&r, "DELETE", &path, None).await;
        assert_eq!((s, code(&e)), (409, "EG.00514002"));
    }

    /// A port that accepts TCP but does not speak Kafka is not a Kafka connection.
    #[tokio::test]
    async fn kafka_tcp_only_is_not_created() {
        let (r, _) = app(ServerConfig::default()).await;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move { while let Ok((_s, _)) = l.accept().await {} });
        let (s, v) = call(&r, "POST", "/v1/{p}/connections", Some(kafka(&addr))).await;
        assert_eq!(s, 200, "{v}");
        let g = settle(&r, v["id"].as_str().unwrap()).await;
        assert_eq!(g["status"], CREATE_FAILED, "{g}");
    }

    /// Against the test broker (`OPENEG_TEST_KAFKA_BROKERS`): its metadata answers.
    #[tokio::test]
    async fn kafka_broker_is_created() {
        let Ok(brokers) = std::env::var("OPENEG_TEST_KAFKA_BROKERS") else {
            assert!(
                std::env::var("OPENEG_REQUIRE_KAFKA").as_deref() != Ok("1"),
                "OPENEG_REQUIRE_KAFKA=1 but OPENEG_TEST_KAFKA_BROKERS is not set"
            );
            eprintln!("skipped: OPENEG_TEST_KAFKA_BROKERS not set");
            return;
        };
        let (r, _) = app(ServerConfig::default()).await;
        let body = json!({"name": "k2", "vpc_id": "v", "subnet_id": "s", "type": "KAFKA",
            "kafka_detail": {"instance_id": "i", "addr": brokers, "security_protocol": "PLAINTEXT"}});
        let (s, v) = call(&r, "POST", "/v1/{p}/connections", Some(body)).await;
        assert_eq!(s, 200, "{v}");
        let g = settle(&r, v["id"].as_str().unwrap()).await;
        assert_eq!(
            (g["status"].as_str(), &g["error_info"]),
            (Some(CREATED), &json!({}))
        );
    }

    #[tokio::test]
    async fn creating_cannot_be_deleted() {
        let (r, st) = app(ServerConfig::default()).await;
        let (s, v) = call(
            &r,
            "POST",
            "/v1/{p}/connections",
            Some(kafka("127.0.0.1:9")),
        )
        .await;
        assert_eq!(s, 200);
        let id = v["id"].as_str().unwrap().to_string();
        // Force CREATING regardless of how fast the probe was.
        let _ = settle(&r, &id).await;
        let mut rec = st
            .store
            .get(PROJECT, Kind::Connection, &id)
            .await
            .unwrap()
            .unwrap();
        rec.body["status"] = json!(CREATING);
        st.store.update(&rec).await.unwrap();
        let (s, e) = call(&r, "DELETE", &format!("/v1/{{p}}/connections/{id}"), None).await;
        assert_eq!((s, code(&e)), (409, "EG.00514005"));
    }

    #[tokio::test]
    async fn quota() {
        let mut cfg = ServerConfig::default();
        cfg.quotas.connection = 1;
        let (r, _) = app(cfg).await;
        let body = |n: &str| json!({"name": n, "vpc_id": "v", "subnet_id": "s"});
        assert_eq!(
            call(&r, "POST", "/v1/{p}/connections", Some(body("a")))
                .await
                .0,
            200
        );
        let (s, e) = call(&r, "POST", "/v1/{p}/connections", Some(body("b"))).await;
        assert_eq!((s, code(&e)), (403, "EG.00514003"));
        let (s, e) = call(&r, "POST", "/v1/{p}/connections", Some(body("a"))).await;
        assert_eq!((s, code(&e)), (400, "EG.00513001"));
        let (s, e) = call(
            &r,
            "POST",
            "/v1/{p}/connections",
            Some(json!({"name": "c", "subnet_id": "s"})),
        )
        .await;
        assert_eq!((s, code(&e)), (400, "EG.00513000"));
    }
}
