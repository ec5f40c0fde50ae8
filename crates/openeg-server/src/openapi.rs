//! The operation table and the OpenAPI 3.0.3 document generated from it.
//!
//! Every HTTP operation is declared once, as an [`Op`]: operation id (EG's SDK naming), method,
//! path, parameters, request and response schemas, and the axum handler. The router is built
//! from the table ([`routes`]) and so is the document ([`document`]): a route cannot exist
//! without its documentation, and the document cannot list a route that is not served.
//!
//! Handlers keep validating raw JSON by hand (precise EG error messages); the schemas here are
//! built with the [`s`] helpers from the same constants the validators use (name patterns,
//! lengths, enums, page limits), so changing a rule changes both.

use crate::state::AppState;
use axum::handler::Handler;
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// HTTP method of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    Post,
    Put,
    Delete,
}

impl Verb {
    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Put => MethodFilter::PUT,
            Verb::Delete => MethodFilter::DELETE,
        }
    }

    /// Lower-case name, as OpenAPI path items key operations.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Put => "put",
            Verb::Delete => "delete",
        }
    }
}

/// Who may call an operation; decides the middleware in front of its route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `/v1/{project_id}/...`: signature or token, bound to the path's project.
    Tenant,
    /// `/openeg/v1/...` extensions: signature or token; the credential's project.
    Credential,
    /// No credential needed (and none checked).
    Public,
    /// No credential needed; one may be sent (ListApiVersions).
    Optional,
}

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum In {
    Path,
    Query,
}

/// One path or query parameter.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: &'static str,
    pub location: In,
    pub required: bool,
    pub schema: Value,
    pub description: &'static str,
}

/// An optional query parameter.
pub fn query(name: &'static str, schema: Value) -> Param {
    Param {
        name,
        location: In::Query,
        required: false,
        schema,
        description: "",
    }
}

/// A required query parameter.
pub fn query_req(name: &'static str, schema: Value) -> Param {
    Param {
        required: true,
        ..query(name, schema)
    }
}

/// A path parameter with a schema other than the default non-empty string.
pub fn path_param(name: &'static str, schema: Value) -> Param {
    Param {
        name,
        location: In::Path,
        required: true,
        schema,
        description: "",
    }
}

/// `offset`, `limit` and `sort` of list operations.
pub fn paging() -> Vec<Param> {
    let mut v = paging_no_sort();
    v.push(query("sort", s::sort()));
    v
}

/// `offset` and `limit` only.
pub fn paging_no_sort() -> Vec<Param> {
    vec![query("offset", s::offset()), query("limit", s::limit())]
}

/// What a successful response carries.
#[derive(Debug, Clone)]
pub enum Body {
    /// `application/json` with this schema.
    Json(Value),
    /// No body (204).
    Empty,
    /// `text/plain` (Prometheus exposition).
    Text,
}

/// One operation: documentation and handler together.
pub struct Op {
    /// Operation id, EG's SDK naming (`CreateChannel`).
    pub id: &'static str,
    pub verb: Verb,
    /// axum path template (`/v1/{project_id}/channels/{channel_id}`), also the OpenAPI path.
    pub path: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    /// One of the 78 EG operations (false for OpenEG's own endpoints).
    pub eg: bool,
    pub access: Access,
    /// Query parameters, and path parameters whose schema is not the default string.
    pub params: Vec<Param>,
    /// Request body schema (JSON), if the operation takes a body.
    pub body: Option<Value>,
    /// Other media types the body may come in (PutEvents' CloudEvents HTTP bindings).
    pub alt_bodies: Vec<(&'static str, Value)>,
    pub status: u16,
    pub response: Body,
    /// Response headers besides `X-Request-Id` (name, description).
    pub headers: Vec<(&'static str, &'static str)>,
    /// Documented error statuses (every one with the `EgError` body; `default` is added).
    pub errors: Vec<u16>,
    route: MethodRouter<AppState>,
}

impl Op {
    /// An operation of `verb` at `path` served by `handler`; 200 with a JSON object by default.
    pub fn new<H, T>(verb: Verb, id: &'static str, path: &'static str, handler: H) -> Op
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let eg = path == "/" || path.starts_with("/v1/");
        let access = if path.starts_with("/v1/") {
            Access::Tenant
        } else {
            Access::Public
        };
        Op {
            id,
            verb,
            path,
            summary: "",
            tag: "",
            eg,
            access,
            params: Vec::new(),
            body: None,
            alt_bodies: Vec::new(),
            status: 200,
            response: Body::Json(s::any_object()),
            headers: Vec::new(),
            errors: Vec::new(),
            route: axum::routing::on(verb.filter(), handler),
        }
    }

    pub fn get<H: Handler<T, AppState>, T: 'static>(
        id: &'static str,
        path: &'static str,
        h: H,
    ) -> Op {
        Op::new(Verb::Get, id, path, h)
    }

    pub fn post<H: Handler<T, AppState>, T: 'static>(
        id: &'static str,
        path: &'static str,
        h: H,
    ) -> Op {
        Op::new(Verb::Post, id, path, h)
    }

    pub fn put<H: Handler<T, AppState>, T: 'static>(
        id: &'static str,
        path: &'static str,
        h: H,
    ) -> Op {
        Op::new(Verb::Put, id, path, h)
    }

    /// A delete answering 204 without a body (override with [`Op::ok`]).
    pub fn delete<H: Handler<T, AppState>, T: 'static>(
        id: &'static str,
        path: &'static str,
        h: H,
    ) -> Op {
        let mut op = Op::new(Verb::Delete, id, path, h);
        op.status = 204;
        op.response = Body::Empty;
        op
    }

    pub fn summary(mut self, tag: &'static str, summary: &'static str) -> Op {
        self.tag = tag;
        self.summary = summary;
        self
    }

    pub fn access(mut self, a: Access) -> Op {
        self.access = a;
        self
    }

    /// Marks an OpenEG extension (not one of EG's operations).
    pub fn extension(mut self) -> Op {
        self.eg = false;
        self
    }

    pub fn params(mut self, p: impl IntoIterator<Item = Param>) -> Op {
        self.params.extend(p);
        self
    }

    pub fn param(mut self, p: Param) -> Op {
        self.params.push(p);
        self
    }

    pub fn body(mut self, schema: Value) -> Op {
        self.body = Some(schema);
        self
    }

    /// The body may also be sent as `media_type` with this schema.
    pub fn also_accepts(mut self, media_type: &'static str, schema: Value) -> Op {
        self.alt_bodies.push((media_type, schema));
        self
    }

    /// 200 with this JSON schema.
    pub fn ok(mut self, schema: Value) -> Op {
        self.status = 200;
        self.response = Body::Json(schema);
        self
    }

    pub fn status(mut self, status: u16, body: Body) -> Op {
        self.status = status;
        self.response = body;
        self
    }

    pub fn header(mut self, name: &'static str, description: &'static str) -> Op {
        self.headers.push((name, description));
        self
    }

    /// Error statuses beyond the defaults of the operation's access class.
    pub fn errors(mut self, codes: &[u16]) -> Op {
        self.errors.extend_from_slice(codes);
        self
    }

    /// Path parameter names of the template, in order.
    pub fn path_params(&self) -> Vec<&'static str> {
        path_names(self.path)
    }

    /// Every documented error status, sorted.
    pub fn error_statuses(&self) -> Vec<u16> {
        let mut v = self.errors.clone();
        match self.access {
            Access::Tenant | Access::Credential => v.extend([400, 401, 403]),
            Access::Public | Access::Optional => {}
        }
        if self.body.is_some() {
            v.extend([400, 413]);
        }
        if self.path_params().len() > 1 {
            v.push(404);
        }
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// The `{name}` segments of a route template, in order.
pub(crate) fn path_names(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|x| x.strip_suffix('}')))
        .collect()
}

/// The axum routes of the operations with this access class; operations sharing a path share
/// one method router.
pub fn routes(ops: &[Op], access: &[Access]) -> Router<AppState> {
    let mut by_path: BTreeMap<&'static str, MethodRouter<AppState>> = BTreeMap::new();
    for op in ops.iter().filter(|o| access.contains(&o.access)) {
        let mr = match by_path.remove(op.path) {
            Some(prev) => prev.merge(op.route.clone()),
            None => op.route.clone(),
        };
        by_path.insert(op.path, mr);
    }
    by_path
        .into_iter()
        .fold(Router::new(), |r, (path, mr)| r.route(path, mr))
}

/// Schema builders over `serde_json` values (OpenAPI 3.0 schema objects).
pub mod s {
    use openeg_api::validate::{self, NamePattern};
    use serde_json::{json, Map, Value};

    pub fn string() -> Value {
        json!({"type": "string"})
    }

    /// A string of at most `max` characters.
    pub fn max(max: usize) -> Value {
        json!({"type": "string", "maxLength": max})
    }

    /// A non-empty string of at most `max` characters.
    pub fn non_empty(max: usize) -> Value {
        json!({"type": "string", "minLength": 1, "maxLength": max})
    }

    pub fn one_of(values: &[&str]) -> Value {
        json!({"type": "string", "enum": values})
    }

    /// A resource name or client id, from the validator's pattern.
    pub fn name(p: NamePattern) -> Value {
        let (min, max) = p.lengths();
        json!({"type": "string", "pattern": p.regex(), "minLength": min, "maxLength": max})
    }

    pub fn int() -> Value {
        json!({"type": "integer", "format": "int64"})
    }

    pub fn int_range(min: i64, max: i64) -> Value {
        json!({"type": "integer", "format": "int64", "minimum": min, "maximum": max})
    }

    pub fn boolean() -> Value {
        json!({"type": "boolean"})
    }

    /// Any JSON value.
    pub fn any() -> Value {
        json!({})
    }

    /// Any JSON object.
    pub fn any_object() -> Value {
        json!({"type": "object"})
    }

    pub fn array(items: Value) -> Value {
        json!({"type": "array", "items": items})
    }

    pub fn array_len(items: Value, min: usize, max: usize) -> Value {
        json!({"type": "array", "items": items, "minItems": min, "maxItems": max})
    }

    /// An object with these (optional) members; further members allowed.
    pub fn obj(props: &[(&str, Value)]) -> Value {
        let mut p = Map::new();
        for (k, v) in props {
            p.insert((*k).to_string(), v.clone());
        }
        json!({"type": "object", "properties": p})
    }

    /// Marks members of an object schema as required.
    pub fn req(mut schema: Value, required: &[&str]) -> Value {
        schema["required"] = json!(required);
        schema
    }

    /// Allows `null` too (members OpenEG renders as `null` when unset).
    pub fn nullable(mut schema: Value) -> Value {
        schema["nullable"] = true.into();
        schema
    }

    /// Adds a description.
    pub fn doc(mut schema: Value, text: &str) -> Value {
        schema["description"] = text.into();
        schema
    }

    /// A timestamp as OpenEG renders it (`2024-01-02T03:04:05Z`).
    pub fn time() -> Value {
        json!({"type": "string", "description": "RFC 3339 UTC, second precision"})
    }

    /// `offset` of list operations.
    pub fn offset() -> Value {
        json!({"type": "integer", "format": "int64", "minimum": 0, "default": 0})
    }

    /// `limit` of list operations.
    pub fn limit() -> Value {
        json!({"type": "integer", "format": "int64", "minimum": 1,
               "maximum": validate::MAX_LIMIT, "default": validate::DEFAULT_LIMIT})
    }

    /// `sort` of list operations.
    pub fn sort() -> Value {
        json!({"type": "string", "pattern": validate::SORT_PATTERN, "default": "created_time:DESC",
               "description": format!("<{}>:<ASC|DESC>", validate::SORT_FIELDS.join("|"))})
    }

    /// The list envelope `{total, size, items}`.
    pub fn list(item: Value) -> Value {
        req(
            obj(&[("total", int()), ("size", int()), ("items", array(item))]),
            &["total", "size", "items"],
        )
    }

    /// `error_info` of resources (`docs/errors.md`): `{}` or code, message and detail.
    pub fn error_info() -> Value {
        obj(&[
            ("error_code", string()),
            ("error_msg", string()),
            ("error_detail", string()),
        ])
    }

    /// A TransForm object (`docs/transforms.md`) with these allowed types.
    pub fn transform(types: &[&str]) -> Value {
        req(
            obj(&[
                ("type", one_of(types)),
                ("value", string()),
                ("template", string()),
            ]),
            &["type"],
        )
    }
}

/// The `EgError` body of every error response (`docs/errors.md`).
fn eg_error() -> Value {
    json!({
        "type": "object",
        "required": ["error_code", "error_msg"],
        "properties": {
            "error_code": {"type": "string", "description": "EG or APIGW error code", "example": "EG.00513000"},
            "error_msg": {"type": "string", "example": "Parameter error: name is required"},
            "request_id": {"type": "string", "description": "same as the X-Request-Id header"}
        }
    })
}

fn error_description(status: u16) -> &'static str {
    match status {
        400 => "Invalid request (EG.00513000 and the more specific EG.0051300x codes)",
        401 => "Authentication failed (APIGW.0301)",
        403 => "Forbidden: foreign project, quota exceeded or system-owned resource",
        404 => "Resource not found (EG.00514001)",
        409 => "Conflict: the resource is still in use (EG.00514002 / EG.00514005)",
        413 => "Request entity too large (APIGW.0201)",
        503 => "Service unavailable (EG.00511001)",
        _ => "Error",
    }
}

fn parameter(p: &Param) -> Value {
    let mut v = json!({
        "name": p.name,
        "in": match p.location { In::Path => "path", In::Query => "query" },
        "required": p.required || p.location == In::Path,
        "schema": p.schema,
    });
    if !p.description.is_empty() {
        v["description"] = p.description.into();
    }
    if p.schema.get("type").and_then(Value::as_str) == Some("array") {
        v["style"] = "form".into();
        v["explode"] = true.into();
    }
    v
}

/// Schema of a path parameter without an explicit one.
fn default_path_schema(name: &str) -> Value {
    if name == "project_id" {
        json!({"type": "string", "pattern": crate::auth::PROJECT_ID_PATTERN,
               "maxLength": crate::auth::PROJECT_ID_MAX})
    } else {
        json!({"type": "string", "minLength": 1})
    }
}

fn operation(op: &Op) -> Value {
    let mut params = Vec::new();
    for name in op.path_params() {
        let explicit = op
            .params
            .iter()
            .find(|p| p.location == In::Path && p.name == name);
        params.push(match explicit {
            Some(p) => parameter(p),
            None => parameter(&path_param(name, default_path_schema(name))),
        });
    }
    params.extend(
        op.params
            .iter()
            .filter(|p| p.location == In::Query)
            .map(parameter),
    );
    let mut o = Map::new();
    o.insert("operationId".into(), op.id.into());
    o.insert("summary".into(), op.summary.into());
    if !op.tag.is_empty() {
        o.insert("tags".into(), json!([op.tag]));
    }
    if !params.is_empty() {
        o.insert("parameters".into(), Value::Array(params));
    }
    if let Some(b) = &op.body {
        let mut content = Map::new();
        content.insert("application/json".into(), json!({"schema": b}));
        for (media_type, schema) in &op.alt_bodies {
            content.insert((*media_type).into(), json!({"schema": schema}));
        }
        o.insert(
            "requestBody".into(),
            json!({"required": true, "content": content}),
        );
    }
    let mut headers = Map::new();
    headers.insert(
        "X-Request-Id".into(),
        json!({"$ref": "#/components/headers/X-Request-Id"}),
    );
    for (name, d) in &op.headers {
        headers.insert(
            (*name).into(),
            json!({"description": d, "required": true, "schema": {"type": "string"}}),
        );
    }
    let mut ok = json!({"description": "Success", "headers": headers});
    match &op.response {
        Body::Json(schema) => {
            ok["content"] = json!({"application/json": {"schema": schema}});
        }
        Body::Text => {
            ok["content"] = json!({"text/plain": {"schema": {"type": "string"}}});
        }
        Body::Empty => {}
    }
    let mut responses = Map::new();
    responses.insert(op.status.to_string(), ok);
    for code in op.error_statuses() {
        responses.insert(
            code.to_string(),
            json!({"description": error_description(code),
                   "headers": {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}},
                   "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EgError"}}}}),
        );
    }
    responses.insert(
        "default".into(),
        json!({"$ref": "#/components/responses/Error"}),
    );
    o.insert("responses".into(), Value::Object(responses));
    match op.access {
        Access::Tenant | Access::Credential => {}
        Access::Public => {
            o.insert("security".into(), json!([]));
        }
        Access::Optional => {
            o.insert(
                "security".into(),
                json!([{}, {"HmacSignature": []}, {"AuthToken": []}]),
            );
        }
    }
    Value::Object(o)
}

/// The OpenAPI 3.0.3 document of the operation table.
pub fn document(ops: &[Op]) -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for op in ops {
        let item = paths
            .entry(op.path.to_string())
            .or_insert_with(|| json!({}));
        item[op.verb.as_str()] = operation(op);
    }
    let mut tags: Vec<&str> = Vec::new();
    for op in ops {
        if !op.tag.is_empty() && !tags.contains(&op.tag) {
            tags.push(op.tag);
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "OpenEG — Huawei Cloud EventGrid (EG) v1 API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The EventGrid v1 wire contract as served by OpenEG, plus OpenEG's own \
                endpoints under /openeg/v1. Generated from the server's operation table. Every error \
                is an EgError body; every response carries X-Request-Id.",
        },
        "tags": tags.iter().map(|t| json!({"name": t})).collect::<Vec<_>>(),
        "security": [{"HmacSignature": []}, {"AuthToken": []}],
        "paths": paths,
        "components": {
            "schemas": {"EgError": eg_error()},
            "headers": {
                "X-Request-Id": {
                    "description": "<32 hex>-<epoch ms>-<node>, also in error bodies",
                    "required": true,
                    "schema": {"type": "string"}
                }
            },
            "responses": {
                "Error": {
                    "description": "EG error",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EgError"}}}
                }
            },
            "securitySchemes": {
                "HmacSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<list>, Signature=<hex>, \
                        signed over the canonical request with X-Sdk-Date and Host (Huawei Cloud APIG \
                        signing, docs/signing.md)."
                },
                "AuthToken": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Auth-Token",
                    "description": "A token from POST /v3/auth/tokens (returned in X-Subject-Token)."
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// The 78 EG operations: id, method and path, in the order of EG's API reference.
    #[rustfmt::skip]
    const EG_OPERATIONS: [(&str, &str, &str); 78] = [
        ("CreateSubscription", "POST", "/v1/{project_id}/subscriptions"),
        ("ListSubscriptions", "GET", "/v1/{project_id}/subscriptions"),
        ("UpdateSubscription", "PUT", "/v1/{project_id}/subscriptions/{subscription_id}"),
        ("ShowDetailOfSubscription", "GET", "/v1/{project_id}/subscriptions/{subscription_id}"),
        ("DeleteSubscription", "DELETE", "/v1/{project_id}/subscriptions/{subscription_id}"),
        ("UpdateSubscriptionSource", "PUT", "/v1/{project_id}/subscriptions/{subscription_id}/sources/{source_id}"),
        ("CreateSubscriptionTarget", "POST", "/v1/{project_id}/subscriptions/{subscription_id}/targets"),
        ("UpdateSubscriptionTarget", "PUT", "/v1/{project_id}/subscriptions/{subscription_id}/targets/{target_id}"),
        ("ShowDetailOfSubscriptionTarget", "GET", "/v1/{project_id}/subscriptions/{subscription_id}/targets/{target_id}"),
        ("DeleteSubscriptionTarget", "DELETE", "/v1/{project_id}/subscriptions/{subscription_id}/targets/{target_id}"),
        ("ExecuteSubscriptionOperation", "POST", "/v1/{project_id}/subscriptions/operation"),
        ("CreateChannel", "POST", "/v1/{project_id}/channels"),
        ("ListChannels", "GET", "/v1/{project_id}/channels"),
        ("UpdateChannel", "PUT", "/v1/{project_id}/channels/{channel_id}"),
        ("ShowDetailOfChannel", "GET", "/v1/{project_id}/channels/{channel_id}"),
        ("DeleteChannel", "DELETE", "/v1/{project_id}/channels/{channel_id}"),
        ("ShowDetailOfEventTrace", "GET", "/v1/{project_id}/events/trace/detail/{trace_id}"),
        ("ShowDetailOfEvent", "GET", "/v1/{project_id}/events/detail/{trace_id}"),
        ("ListTracedEvents", "GET", "/v1/{project_id}/traced-events"),
        ("PutEvents", "POST", "/v1/{project_id}/channels/{channel_id}/events"),
        ("PutOfficialEvents", "POST", "/v1/{project_id}/official/sources/{source_name}/events"),
        ("CheckPutEvents", "POST", "/v1/{project_id}/events/check"),
        ("CreateEventSource", "POST", "/v1/{project_id}/sources"),
        ("ListEventSources", "GET", "/v1/{project_id}/sources"),
        ("UpdateEventSource", "PUT", "/v1/{project_id}/sources/{source_id}"),
        ("ShowDetailOfEventSource", "GET", "/v1/{project_id}/sources/{source_id}"),
        ("DeleteEventSource", "DELETE", "/v1/{project_id}/sources/{source_id}"),
        ("ListEventTarget", "GET", "/v1/{project_id}/target-catalogs"),
        ("DiscoverEventSchemaFromData", "POST", "/v1/{project_id}/schema-discover"),
        ("CreateEventSchema", "POST", "/v1/{project_id}/schemas"),
        ("ListEventSchema", "GET", "/v1/{project_id}/schemas"),
        ("UpdateEventSchema", "PUT", "/v1/{project_id}/schemas/{schema_id}"),
        ("ShowDetailOfEventSchema", "GET", "/v1/{project_id}/schemas/{schema_id}"),
        ("DeleteEventSchema", "DELETE", "/v1/{project_id}/schemas/{schema_id}"),
        ("CreateEventSchemaVersion", "POST", "/v1/{project_id}/schemas/{schema_id}/versions"),
        ("ListEventSchemaVersions", "GET", "/v1/{project_id}/schemas/{schema_id}/versions"),
        ("ShowDetailOfEventSchemaVersion", "GET", "/v1/{project_id}/schemas/{schema_id}/versions/{version}"),
        ("DeleteEventSchemaVersion", "DELETE", "/v1/{project_id}/schemas/{schema_id}/versions/{version}"),
        ("CreateConnection", "POST", "/v1/{project_id}/connections"),
        ("ListConnections", "GET", "/v1/{project_id}/connections"),
        ("UpdateConnection", "PUT", "/v1/{project_id}/connections/{connection_id}"),
        ("ShowDetailOfConnection", "GET", "/v1/{project_id}/connections/{connection_id}"),
        ("DeleteConnection", "DELETE", "/v1/{project_id}/connections/{connection_id}"),
        ("ListAgencies", "GET", "/v1/{project_id}/service-agencies"),
        ("CreateAgencies", "POST", "/v1/{project_id}/service-agencies"),
        ("ListQuotas", "GET", "/v1/{project_id}/quotas"),
        ("ListApiVersions", "GET", "/"),
        ("ListTriggers", "GET", "/v1/{project_id}/subscription-triggers/{func_urn}"),
        ("ListWorkflowTriggers", "GET", "/v1/{project_id}/subscription-triggers/workflow/{workflow_id}"),
        ("UpdateEndpoint", "PUT", "/v1/{project_id}/endpoints/{endpoint_id}"),
        ("DeleteEndpoint", "DELETE", "/v1/{project_id}/endpoints/{endpoint_id}"),
        ("CreateEndpoint", "POST", "/v1/{project_id}/endpoints"),
        ("ListEndpoints", "GET", "/v1/{project_id}/endpoints"),
        ("ListObsBuckets", "GET", "/v1/{project_id}/subscriptions/obsbuckets"),
        ("Refurbishobs", "POST", "/v1/{project_id}/subscriptions/obsbuckets/{bucket_name}/refurbishobs"),
        ("CreateEventStreaming", "POST", "/v1/{project_id}/eventstreamings"),
        ("ListEventStreaming", "GET", "/v1/{project_id}/eventstreamings"),
        ("UpdateEventStreaming", "PUT", "/v1/{project_id}/eventstreamings/{eventstreaming_id}"),
        ("ShowEventStreaming", "GET", "/v1/{project_id}/eventstreamings/{eventstreaming_id}"),
        ("DeleteEventStreaming", "DELETE", "/v1/{project_id}/eventstreamings/{eventstreaming_id}"),
        ("ResumeEventStreaming", "POST", "/v1/{project_id}/eventstreamings/operate/{eventstreaming_id}"),
        ("ShowListOfEventSample", "GET", "/v1/{project_id}/samples"),
        ("CreateEventRouterJob", "POST", "/v1/{project_id}/eventrouter/jobs"),
        ("ListEventRouterJobs", "GET", "/v1/{project_id}/eventrouter/jobs"),
        ("DeleteEventRouterJob", "DELETE", "/v1/{project_id}/eventrouter/jobs/{job_id}"),
        ("ShowEventRouterJob", "GET", "/v1/{project_id}/eventrouter/jobs/{job_id}"),
        ("UpdateEventRouterJob", "PUT", "/v1/{project_id}/eventrouter/jobs/{job_id}"),
        ("ExecuteEventRouterJobOperation", "POST", "/v1/{project_id}/eventrouter/jobs/{job_id}/action"),
        ("ValidateEventRouterJob", "POST", "/v1/{project_id}/eventrouter/jobs/validation"),
        ("ShowEventRouterTaskSyncDetail", "POST", "/v1/{project_id}/eventrouter/jobs/{job_id}/syncDetail"),
        ("ListAvailabilityZones", "GET", "/v1/{project_id}/eventrouter/clusters/availability-zone"),
        ("CreateEventRouterCluster", "POST", "/v1/{project_id}/eventrouter/clusters"),
        ("ListEventRouterClusters", "GET", "/v1/{project_id}/eventrouter/clusters"),
        ("DeleteEventRouterCluster", "DELETE", "/v1/{project_id}/eventrouter/clusters/{cluster_id}"),
        ("ShowEventRouterCluster", "GET", "/v1/{project_id}/eventrouter/clusters/{cluster_id}"),
        ("UpdateEventRouterCluster", "PUT", "/v1/{project_id}/eventrouter/clusters/{cluster_id}"),
        ("ListPubMetrics", "GET", "/v1/{project_id}/metrics/pub"),
        ("ListSubMetrics", "GET", "/v1/{project_id}/metrics/sub"),
    ];

    #[test]
    fn every_eg_operation_is_in_the_table_once() {
        let ops = crate::operations();
        let ids: Vec<&str> = ops.iter().map(|o| o.id).collect();
        let unique: HashSet<&str> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "operation ids must be unique");
        let eg: HashSet<&str> = ops.iter().filter(|o| o.eg).map(|o| o.id).collect();
        let want: HashSet<&str> = EG_OPERATIONS.iter().map(|r| r.0).collect();
        assert_eq!(want.len(), 78);
        assert_eq!(eg, want, "EG operations of the table");
        for (id, method, path) in EG_OPERATIONS {
            let op = ops
                .iter()
                .find(|o| o.id == id)
                .unwrap_or_else(|| panic!("{id} is not in the table"));
            assert_eq!(op.verb.as_str().to_uppercase(), method, "{id}");
            assert_eq!(op.path, path, "{id}");
        }
    }

    #[test]
    fn document_is_consistent() {
        let ops = crate::operations();
        let doc = document(&ops);
        assert_eq!(doc["openapi"], "3.0.3");
        let paths = doc["paths"].as_object().unwrap();
        let mut seen = HashSet::new();
        let mut count = 0;
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                count += 1;
                let id = op["operationId"].as_str().unwrap();
                assert!(seen.insert(id.to_string()), "duplicate operationId {id}");
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                for name in path_names(path) {
                    assert!(
                        params
                            .iter()
                            .any(|p| p["in"] == "path" && p["name"] == name),
                        "{method} {path}: no parameter for {{{name}}}"
                    );
                }
                for p in &params {
                    if p["in"] == "path" {
                        let n = format!("{{{}}}", p["name"].as_str().unwrap());
                        assert!(path.contains(&n), "{method} {path}: stray {n}");
                        assert_eq!(p["required"], true);
                    }
                }
                let responses = op["responses"].as_object().unwrap();
                assert!(responses.contains_key("default"), "{id}");
                assert!(
                    responses.keys().any(|k| k.starts_with('2')),
                    "{id} has no success response"
                );
                for (code, r) in responses {
                    if code.starts_with('4') {
                        assert_eq!(
                            r["content"]["application/json"]["schema"]["$ref"],
                            "#/components/schemas/EgError",
                            "{id} {code}"
                        );
                    }
                }
                if let Some(b) = op.get("requestBody") {
                    assert!(b["content"]["application/json"]["schema"].is_object());
                }
            }
        }
        assert_eq!(count, ops.len());
        for p in [
            "/openeg/v1/rules/test",
            "/openeg/v1/health",
            "/openeg/v1/openapi.json",
            "/metrics",
            "/v3/auth/tokens",
            "/",
        ] {
            assert!(paths.contains_key(p), "{p} is not documented");
        }
    }

    /// Every operation of the table answers through the real router: never the unknown-route
    /// 404 `APIGW.0101` for its own method and path (tenant routes answer 401 without a
    /// credential, public ones reach their handler).
    #[tokio::test]
    async fn every_table_operation_is_routed() {
        use axum::body::Body;
        use base64::Engine;
        use tower::ServiceExt;
        let store = std::sync::Arc::new(openeg_store::SqliteStore::open_in_memory().await.unwrap());
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let st = AppState::new(
            store,
            openeg_store::secrets::SecretBox::from_key_base64(&key).unwrap(),
            crate::ServerConfig::default(),
        );
        let app = crate::router(st);
        let ops = crate::operations();
        let mut pairs = HashSet::new();
        for op in &ops {
            assert!(
                pairs.insert((op.verb, op.path)),
                "{} {} declared twice",
                op.verb.as_str(),
                op.path
            );
            let uri: String = op
                .path
                .split('/')
                .map(|seg| if seg.starts_with('{') { "x1" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            let req = axum::http::Request::builder()
                .method(op.verb.as_str().to_uppercase().as_str())
                .uri(if uri.is_empty() { "/".to_string() } else { uri })
                .body(Body::empty())
                .unwrap();
            let resp = app.clone().oneshot(req).await.unwrap();
            let status = resp.status().as_u16();
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            assert_ne!(body["error_code"], "APIGW.0101", "{} {}", op.id, op.path);
            if op.access == Access::Tenant || op.access == Access::Credential {
                assert_eq!(status, 401, "{} answers without a credential", op.id);
            }
        }
    }
}
