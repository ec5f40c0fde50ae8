//! The shared HTTP client and the classification of HTTP results (`docs/limits.md`).

use crate::Outcome;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use std::time::Duration;

/// Default attempt timeout for HTTP targets.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// One connection-pooling client shared by every HTTP sink (connection reuse across targets).
#[derive(Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
}

impl HttpClient {
    /// Certificates are verified; redirects are not followed (a 3xx is a failure).
    pub fn new() -> Result<Self, String> {
        let inner = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .user_agent(concat!("openeg/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(HttpClient { inner })
    }

    /// POSTs `body` and classifies the result.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Outcome {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(&body)));
        for (k, v) in headers {
            match (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                (Ok(name), Ok(val)) => {
                    h.insert(name, val);
                }
                _ => {
                    return Outcome::GiveUp {
                        code: String::new(),
                        detail: format!("invalid header {k}"),
                    }
                }
            }
        }
        let resp = self
            .inner
            .post(url)
            .headers(h)
            .body(body)
            .timeout(timeout)
            .send()
            .await;
        match resp {
            Ok(r) => {
                let status = r.status().as_u16();
                let retry_after = r
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                // Drain the body so the connection returns to the pool.
                let _ = r.bytes().await;
                classify(status, retry_after)
            }
            Err(e) => Outcome::Retry {
                code: String::new(),
                detail: if e.is_timeout() {
                    "timed out".to_string()
                } else if e.is_connect() {
                    "connection failed".to_string()
                } else {
                    "request failed".to_string()
                },
                retry_after: None,
            },
        }
    }
}

/// `application/json` when the payload is JSON, else plain text (`docs/transforms.md`).
pub fn content_type(body: &[u8]) -> &'static str {
    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    }
}

/// Maps an HTTP status to an outcome.
pub fn classify(status: u16, retry_after: Option<Duration>) -> Outcome {
    let code = status.to_string();
    match status {
        200..=299 => Outcome::Delivered { code },
        408 | 409 | 425 | 429 | 500..=599 => Outcome::Retry {
            detail: format!("HTTP {status}"),
            code,
            retry_after: if status == 429 || status == 503 {
                retry_after
            } else {
                None
            },
        },
        _ => Outcome::GiveUp {
            detail: format!("HTTP {status}"),
            code,
        },
    }
}

/// Percent-encodes one path segment (URNs contain `:`).
pub fn path_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(classify(200, None).is_success());
        assert!(classify(204, None).is_success());
        for s in [408, 409, 425, 429, 500, 502, 503, 504] {
            assert!(matches!(classify(s, None), Outcome::Retry { .. }), "{s}");
        }
        for s in [301, 302, 400, 401, 403, 404, 405, 410, 413, 414, 415, 422] {
            assert!(matches!(classify(s, None), Outcome::GiveUp { .. }), "{s}");
        }
        let hint = Some(Duration::from_secs(3));
        assert!(matches!(
            classify(503, hint),
            Outcome::Retry {
                retry_after: Some(_),
                ..
            }
        ));
        assert!(matches!(
            classify(500, hint),
            Outcome::Retry {
                retry_after: None,
                ..
            }
        ));
        assert_eq!(classify(404, None).code(), "404");
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type(br#"{"a":1}"#), "application/json");
        assert_eq!(content_type(b"My name is x"), "text/plain; charset=utf-8");
        assert_eq!(path_segment("urn:fss:x"), "urn%3Afss%3Ax");
    }
}
