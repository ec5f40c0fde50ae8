//! Connection checks: whether a connection's broker answers as that kind of broker, with the
//! connection's credentials. Run when a connection is created (its `CREATING` →
//! `CREATED`/`CREATE_FAILED` step). A bare TCP connect proves nothing (any port may accept),
//! so each kind asks its broker something real:
//!
//! * KAFKA: a metadata request through a client built from the same settings the Kafka target
//!   uses (addresses, security protocol, SASL credentials); at least one broker must answer.
//! * ROCKETMQ: a route query to the name server (`sinks::rocketmq::check_connection`).
//! * WEBHOOK connections carry no broker: nothing to check.
//!
//! The error text is for `error_info.error_detail`: it names addresses and the broker's
//! reason, never a credential.

use crate::sinks::kafka;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};
use serde_json::Value;
use std::time::Duration;

/// How long one check may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Checks a connection document (`ConnectionInfo`, secrets revealed).
pub async fn check_connection(doc: &Value) -> Result<(), String> {
    match doc.get("type").and_then(Value::as_str).unwrap_or("WEBHOOK") {
        "KAFKA" => check_kafka(doc).await,
        "ROCKETMQ" => crate::sinks::rocketmq::check_connection(doc).await,
        _ => Ok(()),
    }
}

/// A Kafka metadata request with the connection's settings.
pub async fn check_kafka(doc: &Value) -> Result<(), String> {
    let settings = kafka::settings(doc)?;
    let servers = settings
        .get("bootstrap.servers")
        .unwrap_or_default()
        .to_string();
    // No address takes a TCP connection: say so at once (librdkafka would retry until the
    // timeout).
    if !any_reachable(&servers).await {
        return Err(format!("{servers} unreachable"));
    }
    let mut cfg = ClientConfig::new();
    for (k, v) in &settings.0 {
        cfg.set(*k, v);
    }
    // Fail fast on an unreachable address instead of librdkafka's long reconnect schedule.
    cfg.set("socket.connection.setup.timeout.ms", "4000");
    let answer = tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = cfg
            .create()
            .map_err(|e| format!("creating a Kafka client: {e}"))?;
        let md = producer
            .client()
            .fetch_metadata(None, CHECK_TIMEOUT)
            .map_err(|e| format!("no metadata from {servers}: {e}"))?;
        if md.brokers().is_empty() {
            return Err(format!("{servers} answered with no brokers"));
        }
        Ok(())
    })
    .await;
    match answer {
        Ok(r) => r,
        Err(e) => Err(format!("the Kafka check did not finish: {e}")),
    }
}

/// Whether any of the comma-separated `host:port` addresses accepts a TCP connection.
async fn any_reachable(servers: &str) -> bool {
    for addr in servers.split(',').filter(|a| !a.is_empty()) {
        let connect = tokio::net::TcpStream::connect(addr);
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), connect).await {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn kafka_check_fails_on_a_port_that_is_not_kafka() {
        // A listening TCP port that never speaks Kafka: a TCP check would pass.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let doc = json!({"type": "KAFKA", "kafka_detail": {"addr": format!("127.0.0.1:{port}")}});
        let t = std::time::Instant::now();
        let e = check_connection(&doc).await.unwrap_err();
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
        assert!(t.elapsed() < CHECK_TIMEOUT + Duration::from_secs(3));
        drop(l);
    }

    #[tokio::test]
    async fn kafka_check_rejects_unusable_settings_without_echoing_secrets() {
        let doc = json!({"type": "KAFKA", "kafka_detail": {"addr": "127.0.0.1:9",
            "security_protocol": "SASL_PLAINTEXT", "user_name": "u"}});
        let e = check_connection(&doc).await.unwrap_err();
        assert!(e.contains("password is required"), "{e}");
        assert!(check_connection(&json!({"type": "WEBHOOK"})).await.is_ok());
    }

    /// Against the test broker (`OPENEG_TEST_KAFKA_BROKERS`): a metadata answer.
    #[tokio::test]
    async fn kafka_check_passes_against_a_broker() {
        let Ok(brokers) = std::env::var("OPENEG_TEST_KAFKA_BROKERS") else {
            assert!(
                std::env::var("OPENEG_REQUIRE_KAFKA").as_deref() != Ok("1"),
                "OPENEG_REQUIRE_KAFKA=1 but OPENEG_TEST_KAFKA_BROKERS is not set"
            );
            eprintln!("skipped: OPENEG_TEST_KAFKA_BROKERS not set");
            return;
        };
        let doc = json!({"type": "KAFKA", "kafka_detail": {"addr": brokers}});
        check_connection(&doc).await.unwrap();
    }
}
