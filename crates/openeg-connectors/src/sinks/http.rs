//! The shared HTTP client and the classification of HTTP results (`docs/limits.md`).

use crate::Outcome;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use std::time::Duration;

/// Default attempt timeout for HTTP targets.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of a target's response body read: only the status matters, and a target must
/// not be able to make an attempt buffer (or wait on) an endless body.
pub const MAX_RESPONSE_BODY_BYTES: usize = 64 * 1024;

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
        self.send(self.inner.post(url), h, body, timeout).await
    }

    /// PUTs `body` as `content_type` (an object store's upload) and classifies the result.
    pub async fn put(
        &self,
        url: &str,
        content_type: &'static str,
        body: Bytes,
        timeout: Duration,
    ) -> Outcome {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        self.send(self.inner.put(url), h, body, timeout).await
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        headers: HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> Outcome {
        let resp = req
            .headers(headers)
            .body(body)
            .timeout(timeout)
            .send()
            .await;
        match resp {
            Ok(mut r) => {
                let status = r.status().as_u16();
                let retry_after = r
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                drain_bounded(&mut r, MAX_RESPONSE_BODY_BYTES).await;
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

/// Reads and discards a response body of at most `max` bytes, so the connection can return
/// to the pool; a longer body is abandoned (the connection is then closed, not reused).
/// Returns the bytes read.
async fn drain_bounded(r: &mut reqwest::Response, max: usize) -> usize {
    let mut read = 0usize;
    while let Ok(Some(chunk)) = r.chunk().await {
        read += chunk.len();
        if read > max {
            break;
        }
    }
    read
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

    /// A local server answering every request with status 200 and the given body framing,
    /// then `body_len` bytes (or an endless body), never closing on its own.
    async fn server(endless: bool, body_len: usize) -> (String, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    // The request is small: one read holds its head and body.
                    if sock.read(&mut buf).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let head = if endless {
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_string()
                    } else {
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {body_len}\r\n\r\n")
                    };
                    if sock.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let block = vec![b'x'; 16 * 1024];
                    let mut sent = 0usize;
                    while endless || sent < body_len {
                        let n = if endless {
                            block.len()
                        } else {
                            block.len().min(body_len - sent)
                        };
                        let r = if endless {
                            let mut c = format!("{n:x}\r\n").into_bytes();
                            c.extend_from_slice(&block[..n]);
                            c.extend_from_slice(b"\r\n");
                            sock.write_all(&c).await
                        } else {
                            sock.write_all(&block[..n]).await
                        };
                        if r.is_err() {
                            return;
                        }
                        sent += n;
                    }
                    // Keep the connection open, as a keep-alive server would.
                    let _ = sock.read(&mut buf).await;
                });
            }
        });
        (url, task)
    }

    #[tokio::test]
    async fn an_endless_response_body_is_not_read_to_its_end() {
        let (url, task) = server(true, 0).await;
        let client = HttpClient::new().unwrap();
        let started = std::time::Instant::now();
        let outcome = client
            .post(
                &url,
                &[],
                Bytes::from_static(b"{}"),
                Duration::from_secs(20),
            )
            .await;
        // Delivered on the status alone, long before the attempt timeout.
        assert!(outcome.is_success(), "{outcome:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        task.abort();
    }

    #[tokio::test]
    async fn response_bodies_are_read_up_to_the_bound_only() {
        let (url, task) = server(false, 10 << 20).await;
        let client = reqwest::Client::new();
        let mut r = client.post(&url).body("{}").send().await.unwrap();
        let read = drain_bounded(&mut r, MAX_RESPONSE_BODY_BYTES).await;
        assert!(read > MAX_RESPONSE_BODY_BYTES, "{read}");
        // One chunk past the bound at most, far from the 10 MiB sent.
        assert!(read <= MAX_RESPONSE_BODY_BYTES + (1 << 20), "{read}");
        let (url2, task2) = server(false, 1000).await;
        let mut r = client.post(&url2).body("{}").send().await.unwrap();
        assert_eq!(drain_bounded(&mut r, MAX_RESPONSE_BODY_BYTES).await, 1000);
        task.abort();
        task2.abort();
    }
}
