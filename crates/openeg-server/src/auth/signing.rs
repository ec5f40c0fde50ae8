//! SDK-HMAC-SHA256 request verification, exactly as `huaweicloudsdkcore` signs (`docs/signing.md`).
//!
//! Pure functions over the received request parts: canonical URI from the raw path,
//! canonical query from the raw query string, canonical headers from received values, and
//! the raw body bytes (never re-serialized).

use hmac::{Hmac, Mac};
use http::HeaderMap;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Everything except RFC 3986 unreserved characters is encoded.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHeader {
    pub access: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Why a signature was refused; rendered as the 401 detail (never reveals whether an AK exists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigError {
    Malformed(&'static str),
    UnsupportedScheme,
    DateMissing,
    DateInvalid,
    DateSkew,
    Mismatch,
}

impl SigError {
    pub fn reason(&self) -> &'static str {
        match self {
            SigError::Malformed(r) => r,
            SigError::UnsupportedScheme => "unsupported authorization scheme",
            SigError::DateMissing => "X-Sdk-Date missing",
            SigError::DateInvalid => "X-Sdk-Date invalid",
            SigError::DateSkew => "X-Sdk-Date expired",
            SigError::Mismatch => "signature mismatch",
        }
    }
}

/// Parses `SDK-HMAC-SHA256 Access=AK, SignedHeaders=a;b, Signature=hex`.
pub fn parse_authorization(value: &str) -> Result<AuthHeader, SigError> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or(SigError::UnsupportedScheme)?;
    let (mut access, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (k, v) = part
            .split_once('=')
            .ok_or(SigError::Malformed("malformed authorization header"))?;
        match k.trim() {
            "Access" => access = Some(v.trim().to_string()),
            "SignedHeaders" => signed = Some(v.trim().to_string()),
            "Signature" => sig = Some(v.trim().to_string()),
            _ => {}
        }
    }
    let access = access
        .filter(|a| !a.is_empty())
        .ok_or(SigError::Malformed("authorization header lacks Access"))?;
    let signed = signed.ok_or(SigError::Malformed(
        "authorization header lacks SignedHeaders",
    ))?;
    let signature = sig.ok_or(SigError::Malformed("authorization header lacks Signature"))?;
    let signed_headers: Vec<String> = signed
        .split(';')
        .filter(|s| !s.is_empty())
        .map(|s| s.to_ascii_lowercase())
        .collect();
    if !signed_headers.iter().any(|h| h == "host")
        || !signed_headers.iter().any(|h| h == "x-sdk-date")
    {
        return Err(SigError::Malformed("host and x-sdk-date must be signed"));
    }
    Ok(AuthHeader {
        access,
        signed_headers,
        signature,
    })
}

/// Parses `YYYYMMDDTHHMMSSZ` into Unix seconds.
pub fn parse_sdk_date(s: &str) -> Result<i64, SigError> {
    chrono::NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%SZ")
        .map(|d| d.and_utc().timestamp())
        .map_err(|_| SigError::DateInvalid)
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, ENCODE).to_string()
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Canonical URI: decode the path, re-encode each segment, always end with `/`.
pub fn canonical_uri(raw_path: &str) -> String {
    let decoded = decode(raw_path);
    let mut out = decoded.split('/').map(encode).collect::<Vec<_>>().join("/");
    if !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// Canonical query: decode pairs (a `+` stays literal), sort by key then value, re-encode.
pub fn canonical_query(raw_query: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let vals: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .collect();
    if vals.is_empty() {
        None
    } else {
        Some(vals.join(","))
    }
}

/// Builds the canonical request; fails if a signed header is absent.
pub fn canonical_request(
    method: &str,
    raw_path: &str,
    raw_query: &str,
    headers: &HeaderMap,
    signed_headers: &[String],
    body: &[u8],
) -> Result<String, SigError> {
    let mut canon_headers = String::new();
    for h in signed_headers {
        let v =
            header_value(headers, h).ok_or(SigError::Malformed("a signed header is missing"))?;
        canon_headers.push_str(h);
        canon_headers.push(':');
        canon_headers.push_str(&v);
        canon_headers.push('\n');
    }
    let payload = if body.is_empty() {
        EMPTY_SHA256.to_string()
    } else {
        hex::encode(Sha256::digest(body))
    };
    Ok(format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        method.to_ascii_uppercase(),
        canonical_uri(raw_path),
        canonical_query(raw_query),
        canon_headers,
        signed_headers.join(";"),
        payload
    ))
}

/// `SDK-HMAC-SHA256\n<date>\n<hex sha256(canonical request)>`.
pub fn string_to_sign(sdk_date: &str, canonical: &str) -> String {
    format!(
        "{ALGORITHM}\n{sdk_date}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    )
}

/// Lower-case hex HMAC-SHA256 of the string to sign under the SK.
pub fn sign(secret_key: &str, string_to_sign: &str) -> Vec<u8> {
    // HMAC accepts keys of any length, so new_from_slice cannot fail here.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret_key.as_bytes()) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    mac.update(string_to_sign.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// A request as received, for verification.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// Verifies the date window and signature for an already parsed header and a known SK.
pub fn verify(
    req: &SignedRequest<'_>,
    auth: &AuthHeader,
    secret_key: &str,
    now_unix: i64,
    max_skew_secs: i64,
) -> Result<(), SigError> {
    let date = header_value(req.headers, "x-sdk-date").ok_or(SigError::DateMissing)?;
    let ts = parse_sdk_date(&date)?;
    if (ts - now_unix).abs() > max_skew_secs {
        return Err(SigError::DateSkew);
    }
    let presented = hex::decode(&auth.signature).map_err(|_| SigError::Mismatch)?;
    if presented.len() != 32 {
        return Err(SigError::Mismatch);
    }
    let canonical = canonical_request(
        req.method,
        req.raw_path,
        req.raw_query,
        req.headers,
        &auth.signed_headers,
        req.body,
    )?;
    let expected = sign(secret_key, &string_to_sign(&date, &canonical));
    if bool::from(expected.ct_eq(&presented)) {
        Ok(())
    } else {
        Err(SigError::Mismatch)
    }
}

/// Produces an `Authorization` value the way the SDK does (used by tests and the bench client).
pub fn authorization_for(
    access_key: &str,
    secret_key: &str,
    method: &str,
    raw_path: &str,
    raw_query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, SigError> {
    let mut names: Vec<String> = headers
        .keys()
        .map(|k| k.as_str().to_ascii_lowercase())
        .filter(|k| !k.contains('_'))
        .collect();
    names.sort();
    names.dedup();
    let date = header_value(headers, "x-sdk-date").ok_or(SigError::DateMissing)?;
    let canonical = canonical_request(method, raw_path, raw_query, headers, &names, body)?;
    let sig = hex::encode(sign(secret_key, &string_to_sign(&date, &canonical)));
    Ok(format!(
        "{ALGORITHM} Access={access_key}, SignedHeaders={}, Signature={sig}",
        names.join(";")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const AK: &str = "AKTESTEXAMPLE00000001";
    const SK: &str = "SKtestExampleSecretKey0000000000000000001";
    const PROJECT: &str = "0123456789abcdef0123456789abcdef";
    const DATE: &str = "20240102T030405Z";

    fn headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("host", HeaderValue::from_static("127.0.0.1:8080"));
        h.insert(
            "user-agent",
            HeaderValue::from_static("huaweicloud-usdk-python/3.0"),
        );
        h.insert("x-project-id", HeaderValue::from_static(PROJECT));
        h.insert("x-sdk-date", HeaderValue::from_static(DATE));
        h
    }

    fn now() -> i64 {
        parse_sdk_date(DATE).unwrap()
    }

    const BODY_A: &str = r#"{"events": [{"id": "evt-0001", "source": "orders-app", "specversion": "1.0", "type": "order.created", "datacontenttype": "application/json", "time": "2024-01-02T03:04:05Z", "data": {"orderId": 42, "amount": 9.5}}]}"#;

    fn check(method: &str, path: &str, query: &str, body: &[u8], sts: &str, sig: &str) {
        let h = headers();
        let names: Vec<String> = [
            "content-type",
            "host",
            "user-agent",
            "x-project-id",
            "x-sdk-date",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let canonical = canonical_request(method, path, query, &h, &names, body).unwrap();
        let s = string_to_sign(DATE, &canonical);
        assert_eq!(s, sts);
        assert_eq!(hex::encode(sign(SK, &s)), sig);
        let auth = authorization_for(AK, SK, method, path, query, &h, body).unwrap();
        let parsed = parse_authorization(&auth).unwrap();
        let req = SignedRequest {
            method,
            raw_path: path,
            raw_query: query,
            headers: &h,
            body,
        };
        assert_eq!(verify(&req, &parsed, SK, now(), 900), Ok(()));
    }

    #[test]
    fn example_a_put_events() {
        assert_eq!(BODY_A.len(), 214);
        check(
            "POST",
            &format!("/v1/{PROJECT}/channels/7c0b3d9e-1f2a-4b5c-8d6e-0a1b2c3d4e5f/events"),
            "",
            BODY_A.as_bytes(),
            "SDK-HMAC-SHA256\n20240102T030405Z\n3eef5fa3aa556431c48555552c5fcca1c660b9e9dddd2b1e8f444f54b9a29ebc",
            "e99675fe728d1bbd0c88b2de375d1355a6e8c5addbf6ea73f8eadb84e2a6d086",
        );
    }

    #[test]
    fn example_b_list_with_query() {
        check(
            "GET",
            &format!("/v1/{PROJECT}/subscriptions"),
            "fuzzy_name=ord%20er&limit=10&offset=0&sort=created_time%3ADESC",
            b"",
            "SDK-HMAC-SHA256\n20240102T030405Z\n6bc930f853aa17c6183609250004cb304b4c998ab81f3bd5a9559b6b58fba7f3",
            "6ef5ce5c4d609737820a39de4b12668fcd477b3104ba3ad2c7738f266052db1e",
        );
        // Order of the received query does not matter.
        assert_eq!(
            canonical_query("sort=created_time%3ADESC&limit=10&offset=0&fuzzy_name=ord%20er"),
            "fuzzy_name=ord%20er&limit=10&offset=0&sort=created_time%3ADESC"
        );
    }

    #[test]
    fn example_c_encoded_path_parameter() {
        check(
            "GET",
            &format!("/v1/{PROJECT}/subscription-triggers/urn%3Afss%3Acn-north-4%3Aabc%3Afunction%3Adefault%3Af1%3Alatest"),
            "",
            b"",
            "SDK-HMAC-SHA256\n20240102T030405Z\n1a6d9ab2d730cc3d8f2e628262fb2110ed60eebf4075834cf8971304bc91f21d",
            "af94e5d67c47b3fd42b4333a0da0bba52fcf307b46875e38d89c1c76e2543b2b",
        );
    }

    #[test]
    fn canonical_uri_rules() {
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/v1/p/channels"), "/v1/p/channels/");
        assert_eq!(canonical_uri("/v1/p/channels/"), "/v1/p/channels/");
        assert_eq!(canonical_uri("/a%2Fb"), "/a/b/");
        assert_eq!(canonical_uri("/a b"), "/a%20b/");
        assert_eq!(canonical_query("a+b=c"), "a%2Bb=c");
        assert_eq!(canonical_query("flag"), "flag=");
        assert_eq!(canonical_query("t=B&t=A"), "t=A&t=B");
    }

    fn signed_req() -> (HeaderMap, String) {
        let h = headers();
        let auth = authorization_for(AK, SK, "GET", "/v1/p/channels", "limit=1", &h, b"").unwrap();
        (h, auth)
    }

    #[test]
    fn tampering_is_detected() {
        let (h, auth) = signed_req();
        let parsed = parse_authorization(&auth).unwrap();
        let ok = SignedRequest {
            method: "GET",
            raw_path: "/v1/p/channels",
            raw_query: "limit=1",
            headers: &h,
            body: b"",
        };
        assert_eq!(verify(&ok, &parsed, SK, now(), 900), Ok(()));
        assert_eq!(
            verify(&ok, &parsed, "wrong", now(), 900),
            Err(SigError::Mismatch)
        );
        let q = SignedRequest {
            raw_query: "limit=2",
            ..ok
        };
        assert_eq!(verify(&q, &parsed, SK, now(), 900), Err(SigError::Mismatch));
        let b = SignedRequest {
            body: b"{}",
            raw_query: "limit=1",
            ..q
        };
        assert_eq!(verify(&b, &parsed, SK, now(), 900), Err(SigError::Mismatch));
        let m = SignedRequest {
            method: "DELETE",
            body: b"",
            ..b
        };
        assert_eq!(verify(&m, &parsed, SK, now(), 900), Err(SigError::Mismatch));
    }

    #[test]
    fn date_window_is_fifteen_minutes() {
        let (h, auth) = signed_req();
        let parsed = parse_authorization(&auth).unwrap();
        let req = SignedRequest {
            method: "GET",
            raw_path: "/v1/p/channels",
            raw_query: "limit=1",
            headers: &h,
            body: b"",
        };
        assert!(verify(&req, &parsed, SK, now() + 15 * 60, 900).is_ok());
        assert_eq!(
            verify(&req, &parsed, SK, now() + 16 * 60, 900),
            Err(SigError::DateSkew)
        );
        assert_eq!(
            verify(&req, &parsed, SK, now() - 16 * 60, 900),
            Err(SigError::DateSkew)
        );
        let mut h2 = h.clone();
        h2.remove("x-sdk-date");
        let req2 = SignedRequest {
            headers: &h2,
            ..req
        };
        assert_eq!(
            verify(&req2, &parsed, SK, now(), 900),
            Err(SigError::DateMissing)
        );
        assert_eq!(
            parse_sdk_date("2024-01-02T03:04:05Z"),
            Err(SigError::DateInvalid)
        );
    }

    #[test]
    fn authorization_parsing() {
        assert_eq!(
            parse_authorization("Bearer abc"),
            Err(SigError::UnsupportedScheme)
        );
        assert_eq!(
            parse_authorization("V11-HMAC-SHA256 Credential=a/b, SignedHeaders=host, Signature=00"),
            Err(SigError::UnsupportedScheme)
        );
        assert!(parse_authorization(
            "SDK-HMAC-SHA256 Access=A, SignedHeaders=x-sdk-date, Signature=00"
        )
        .is_err());
        let p = parse_authorization(
            "SDK-HMAC-SHA256 Access=A,SignedHeaders=host;x-sdk-date,   Signature=ab",
        )
        .unwrap();
        assert_eq!(p.access, "A");
        assert_eq!(p.signed_headers, vec!["host", "x-sdk-date"]);
        let (h, _) = signed_req();
        let bad = AuthHeader {
            access: "A".into(),
            signed_headers: vec!["host".into(), "x-sdk-date".into()],
            signature: "zz".into(),
        };
        let req = SignedRequest {
            method: "GET",
            raw_path: "/",
            raw_query: "",
            headers: &h,
            body: b"",
        };
        assert_eq!(verify(&req, &bad, SK, now(), 900), Err(SigError::Mismatch));
    }
}
