//! OBS sinks of event streams (`sink.sink_obs`): one object per message, PUT into a bucket of
//! any S3-compatible store (Huawei OBS speaks the S3 API) at this OpenEG's `obs_endpoint`,
//! path-style, signed with AWS Signature V4 by `rusty-s3` for `obs_region`.
//!
//! The message's `key` is the object key and its payload the object; the stream runtime
//! names objects after the source positions they hold, so writing a batch again (after a
//! crash before its commit) overwrites the same object instead of adding a second one. The
//! bucket must exist: OpenEG creates nothing in the user's store.
//!
//! Failures: a store that answers 5xx, 408 or 429 or cannot be reached is retried; 403
//! (keys), 404 (no bucket) are about the sink, and the runtime retries those too (they are
//! not the record's fault). The secret key never reaches a log line or an error text.

use super::http::{HttpClient, ATTEMPT_TIMEOUT};
use crate::{Message, Outcome, Sink};
use rusty_s3::actions::{PutObject, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};
use std::time::Duration;

/// `obs_region` when none is configured.
pub const DEFAULT_REGION: &str = "local-1";
/// How long a signed upload URL stays valid: only for the attempt it is made for.
const SIGNED_FOR: Duration = Duration::from_secs(300);
/// The content type of stream objects: one JSON value per line.
pub const CONTENT_TYPE: &str = "application/x-ndjson";

/// Where and as whom an OBS sink writes.
#[derive(Clone)]
pub struct ObsConfig {
    /// The store's base URL (`obs_endpoint`), e.g. `https://obs.example.com`.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    /// Never logged, never in an error.
    pub secret_key: String,
}

impl std::fmt::Debug for ObsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObsConfig")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

pub struct ObsSink {
    client: HttpClient,
    bucket: Bucket,
    credentials: Credentials,
}

impl ObsSink {
    /// Fails for an endpoint that is not an http(s) URL or a bucket name the S3 API refuses.
    pub fn new(client: HttpClient, cfg: &ObsConfig) -> Result<ObsSink, String> {
        // A base path is kept: without its trailing slash, URL joining would drop its last
        // segment.
        let endpoint = if cfg.endpoint.ends_with('/') {
            cfg.endpoint.clone()
        } else {
            format!("{}/", cfg.endpoint)
        };
        let url: reqwest::Url = endpoint
            .parse()
            .map_err(|e| format!("obs_endpoint {:?} is not a URL: {e}", cfg.endpoint))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("obs_endpoint {:?} is not http(s)", cfg.endpoint));
        }
        if !valid_bucket(&cfg.bucket) {
            return Err(format!(
                "obs_bucket {:?} is not a bucket name (3-63 lower-case letters, digits, '.' \
                 and '-', starting and ending with a letter or digit)",
                cfg.bucket
            ));
        }
        let bucket = Bucket::new(url, UrlStyle::Path, cfg.bucket.clone(), cfg.region.clone())
            .map_err(|e| format!("bucket {:?}: {e}", cfg.bucket))?;
        Ok(ObsSink {
            client,
            bucket,
            credentials: Credentials::new(cfg.access_key.clone(), cfg.secret_key.clone()),
        })
    }

    /// The signed URL of an upload of `key`.
    fn put_url(&self, key: &str) -> reqwest::Url {
        PutObject::new(&self.bucket, Some(&self.credentials), key).sign(SIGNED_FOR)
    }
}

#[async_trait::async_trait]
impl Sink for ObsSink {
    async fn send(&self, msg: &Message) -> Outcome {
        let Some(key) = msg.key.as_deref().filter(|k| !k.is_empty()) else {
            return Outcome::GiveUp {
                code: String::new(),
                detail: "an OBS object needs a key".into(),
            };
        };
        // Path-style URLs resolve `.` and `..`: such a segment could leave the bucket.
        if key.starts_with('/') || key.split('/').any(|seg| seg == "." || seg == "..") {
            return Outcome::GiveUp {
                code: String::new(),
                detail: format!("the object key {key:?} has a '.' or '..' segment"),
            };
        }
        let url = self.put_url(key);
        self.client
            .put(
                url.as_str(),
                CONTENT_TYPE,
                msg.payload.clone(),
                ATTEMPT_TIMEOUT,
            )
            .await
    }
}

/// An S3 bucket name (path-style rules): 3–63 characters of `a-z`, `0-9`, `.` and `-`,
/// beginning and ending with a letter or digit, no `..`.
pub fn valid_bucket(name: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && edge(name.chars().next())
        && edge(name.chars().last())
        && !name.contains("..")
}

/// Renders an EG `time_format` (pattern letters `yyyy`, `MM`, `dd`, `HH`, `mm`, as the EG
/// console offers them, e.g. `yyyy/MM/dd/HH`) for `t`; other characters are kept.
pub fn render_time_format(format: &str, t: chrono::DateTime<chrono::Utc>) -> String {
    let mut out = String::with_capacity(format.len() + 8);
    let mut rest = format;
    while !rest.is_empty() {
        let (text, len) = if rest.starts_with("yyyy") {
            (t.format("%Y").to_string(), 4)
        } else if rest.starts_with("MM") {
            (t.format("%m").to_string(), 2)
        } else if rest.starts_with("dd") {
            (t.format("%d").to_string(), 2)
        } else if rest.starts_with("HH") {
            (t.format("%H").to_string(), 2)
        } else if rest.starts_with("mm") {
            (t.format("%M").to_string(), 2)
        } else {
            let c = rest.chars().next().unwrap_or_default();
            (c.to_string(), c.len_utf8())
        };
        out.push_str(&text);
        rest = &rest[len..];
    }
    out
}

/// The directory part of an object key: `time_format` rendered for `event_time` (RFC 3339,
/// an event's `time`), or for now when that is absent or unreadable.
pub fn time_dir(time_format: &str, event_time: Option<&str>) -> String {
    let t = event_time
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(chrono::Utc::now);
    render_time_format(time_format, t)
}

/// The object key of a batch's records of one partition: `{path}/{time}/{partition}-{first}-
/// {last}.json`, empty path segments left out.
pub fn object_key(path: &str, time: &str, partition: &str, first: i64, last: i64) -> String {
    let name = format!("{partition}-{first}-{last}.json");
    [path, time]
        .iter()
        .map(|s| s.trim_matches('/'))
        .filter(|s| !s.is_empty())
        .chain(std::iter::once(name.as_str()))
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn time_formats_render_the_console_pattern_letters() {
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 3, 7, 5, 9, 30)
            .single()
            .unwrap();
        assert_eq!(render_time_format("yyyy/MM/dd/HH", t), "2026/03/07/05");
        assert_eq!(render_time_format("yyyy-MM-dd_HHmm", t), "2026-03-07_0509");
        assert_eq!(render_time_format("d/é/yy", t), "d/é/yy");
        assert_eq!(render_time_format("", t), "");
        assert_eq!(
            time_dir("yyyy/MM/dd/HH", Some("2026-03-07T05:09:30.123+08:00")),
            "2026/03/06/21"
        );
    }

    #[test]
    fn object_keys_skip_empty_segments() {
        assert_eq!(
            object_key("dump/", "2026/03", "2", 10, 19),
            "dump/2026/03/2-10-19.json"
        );
        assert_eq!(object_key("", "2026", "0", 0, 0), "2026/0-0-0.json");
        assert_eq!(object_key("/", "", "b-1", 5, 7), "b-1-5-7.json");
    }

    #[test]
    fn signed_urls_are_path_style_and_hold_no_secret() {
        let cfg = ObsConfig {
            endpoint: "http://127.0.0.1:15000".into(),
            region: DEFAULT_REGION.into(),
            bucket: "my-bucket".into(),
            access_key: "AK".into(),
            secret_key: "the-secret".into(),
        };
        let sink = ObsSink::new(HttpClient::new().unwrap(), &cfg).unwrap();
        let url = sink.put_url("a/b/0-1-2.json");
        assert!(
            url.as_str()
                .starts_with("http://127.0.0.1:15000/my-bucket/a/b/0-1-2.json?"),
            "{url}"
        );
        assert!(url.as_str().contains("X-Amz-Signature="), "{url}");
        assert!(!url.as_str().contains("the-secret"));
        assert!(!format!("{cfg:?}").contains("the-secret"));
        let bad = ObsConfig {
            endpoint: "ftp://x".into(),
            ..cfg.clone()
        };
        assert!(ObsSink::new(HttpClient::new().unwrap(), &bad).is_err());
        let bad = ObsConfig {
            bucket: "../other".into(),
            ..cfg.clone()
        };
        assert!(ObsSink::new(HttpClient::new().unwrap(), &bad).is_err());
        // A base path survives.
        let under = ObsConfig {
            endpoint: "http://127.0.0.1:15000/s3".into(),
            ..cfg
        };
        let sink = ObsSink::new(HttpClient::new().unwrap(), &under).unwrap();
        assert!(sink
            .put_url("k.json")
            .as_str()
            .starts_with("http://127.0.0.1:15000/s3/my-bucket/k.json?"));
    }

    #[test]
    fn bucket_names_follow_the_s3_rules() {
        for ok in ["abc", "my-bucket.2026", "a".repeat(63).as_str()] {
            assert!(valid_bucket(ok), "{ok}");
        }
        for bad in [
            "ab",
            "Abc",
            "-abc",
            "abc-",
            "a..b",
            "a/b",
            "a_b",
            "a".repeat(64).as_str(),
        ] {
            assert!(!valid_bucket(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn keys_with_dot_segments_are_refused_without_a_request() {
        let cfg = ObsConfig {
            endpoint: "http://127.0.0.1:9".into(),
            region: DEFAULT_REGION.into(),
            bucket: "b-1".into(),
            access_key: "AK".into(),
            secret_key: "SK".into(),
        };
        let sink = ObsSink::new(HttpClient::new().unwrap(), &cfg).unwrap();
        for key in ["../x.json", "a/./b.json", "/abs.json"] {
            let msg = Message {
                key: Some(key.into()),
                ..Message::default()
            };
            assert!(
                matches!(sink.send(&msg).await, Outcome::GiveUp { .. }),
                "{key}"
            );
        }
    }
}
