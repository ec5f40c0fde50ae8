//! What `KafkaLog::connect` refuses or reports without a reachable broker.

use openeg_log::LogError;
use openeg_log_kafka::{KafkaLog, KafkaLogConfig};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_fails_within_the_timeout() {
    // Port 9 (discard) takes no connection on a test machine.
    let mut cfg = KafkaLogConfig::new("127.0.0.1:9");
    cfg.operation_timeout = Duration::from_secs(2);
    let started = Instant::now();
    let e = KafkaLog::connect(cfg).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let msg = e.to_string();
    assert!(matches!(e, LogError::Backend(_)), "{e:?}");
    assert!(
        msg.starts_with("event log backend: the Kafka cluster at 127.0.0.1:9 did not answer"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guarantees_cannot_be_overridden_and_secrets_are_not_shown() {
    let mut cfg = KafkaLogConfig::new("127.0.0.1:9");
    cfg.properties.push(("acks".into(), "0".into()));
    let e = KafkaLog::connect(cfg).await.unwrap_err().to_string();
    assert!(e.contains("acks is set by the log itself"), "{e}");

    let mut cfg = KafkaLogConfig::new("127.0.0.1:9");
    cfg.properties
        .push(("no.such.property".into(), "s3cret-value".into()));
    let e = KafkaLog::connect(cfg).await.unwrap_err().to_string();
    assert!(e.contains("no.such.property"), "{e}");
    assert!(!e.contains("s3cret-value"), "{e}");

    let mut cfg = KafkaLogConfig::new("127.0.0.1:9");
    cfg.topic_prefix = "bad prefix".into();
    assert!(matches!(
        KafkaLog::connect(cfg).await,
        Err(LogError::InvalidName(p)) if p == "bad prefix"
    ));
}
