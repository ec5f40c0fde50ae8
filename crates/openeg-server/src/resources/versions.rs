//! ListApiVersions (op 47): `GET /`, answered with or without credentials.

use crate::openapi::{s, Access, Op};
use crate::util::ok;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use serde_json::json;

pub async fn list_api_versions(headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    ok(json!({"versions": [{
        "id": "v1",
        "links": [{"href": format!("http://{host}/v1"), "rel": "self"}],
        "version": "",
        "min_version": "",
        "status": "CURRENT",
        "updated": "2022-04-19T12:20:10Z",
    }]}))
}

pub fn ops() -> Vec<Op> {
    vec![Op::get("ListApiVersions", "/", list_api_versions)
        .summary("API versions", "List API versions")
        .access(Access::Optional)
        .ok(s::req(
            s::obj(&[(
                "versions",
                s::array(s::req(
                    s::obj(&[
                        ("id", s::string()),
                        (
                            "links",
                            s::array(s::obj(&[("href", s::string()), ("rel", s::string())])),
                        ),
                        ("version", s::string()),
                        ("min_version", s::string()),
                        ("status", s::one_of(&["CURRENT", "SUPPORTED", "DEPRECATED"])),
                        ("updated", s::time()),
                    ]),
                    &["id", "status"],
                )),
            )]),
            &["versions"],
        ))]
}
