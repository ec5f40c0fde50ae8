//! `openeg-bench rocketmq produce|consume`: a small RocketMQ client for the end-to-end suite
//! (Python has no client that works against rocketmq-rust), built on OpenEG's own RocketMQ
//! plumbing (`openeg_connectors::rocketmq`).
//!
//! * `produce`: `--count` messages to `--topic`, body `{"prefix":P,"i":i,"pad":"…"}` padded to
//!   `--size` bytes, keys `P-i`, user property `seq` = i, tag `--tag` or the `--tags` in
//!   turn; prints one summary line.
//! * `consume`: reads `--topic` from its first offset in consumer group `--group` until
//!   `--count` messages arrived or `--timeout` seconds passed; prints one JSON line per
//!   message (`{"keys","tags","body","msgId","seq","broker","queueId","queueOffset"}`, body as
//!   UTF-8 text, lossy) and exits 1 when
//!   fewer than `--count` arrived.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use openeg_connectors::rocketmq::{self as rmq, ClientSettings, Outgoing};
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum RocketMqCmd {
    /// Sends messages to a topic (each acknowledged SEND_OK before the next).
    Produce(ProduceArgs),
    /// Reads messages of a topic in a consumer group; one JSON line each.
    Consume(ConsumeArgs),
}

#[derive(Args)]
pub struct ProduceArgs {
    /// Name server address list (`host:port;host:port`).
    #[arg(long)]
    namesrv: String,
    #[arg(long)]
    topic: String,
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Body size in bytes (at least the JSON skeleton).
    #[arg(long, default_value_t = 0)]
    size: usize,
    /// Prefix of the bodies and keys.
    #[arg(long, default_value = "m")]
    prefix: String,
    /// Tag of every message.
    #[arg(long)]
    tag: Option<String>,
    /// Tags taken in turn (message i gets tag i mod n); overrides `--tag`.
    #[arg(long, value_delimiter = ',')]
    tags: Vec<String>,
}

#[derive(Args)]
pub struct ConsumeArgs {
    #[arg(long)]
    namesrv: String,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    group: String,
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Seconds to wait for `--count` messages (a new group's first rebalance takes seconds).
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

fn settings(namesrv: &str) -> anyhow::Result<ClientSettings> {
    ClientSettings::new(namesrv, false, None, "--namesrv").map_err(anyhow::Error::msg)
}

/// The body of message `i`: JSON, padded to `size` bytes when that is larger.
pub fn body(prefix: &str, i: usize, size: usize) -> Vec<u8> {
    let skeleton = json!({"prefix": prefix, "i": i, "pad": ""}).to_string();
    let pad = "x".repeat(size.saturating_sub(skeleton.len()));
    json!({"prefix": prefix, "i": i, "pad": pad})
        .to_string()
        .into_bytes()
}

pub async fn run(cmd: RocketMqCmd) -> anyhow::Result<()> {
    match cmd {
        RocketMqCmd::Produce(a) => {
            let s = settings(&a.namesrv)?;
            let messages = (0..a.count)
                .map(|i| Outgoing {
                    body: body(&a.prefix, i, a.size),
                    keys: Some(format!("{}-{i}", a.prefix)),
                    tag: if a.tags.is_empty() {
                        a.tag.clone()
                    } else {
                        a.tags.get(i % a.tags.len()).cloned()
                    },
                    // A user property, so that copies can be checked for them too.
                    properties: vec![("seq".to_string(), i.to_string())],
                })
                .collect();
            let started = Instant::now();
            let ids = rmq::produce(&s, &a.topic, messages)
                .await
                .map_err(anyhow::Error::msg)
                .context("producing")?;
            println!(
                "{}",
                json!({"sent": ids.len(), "topic": a.topic,
                       "seconds": started.elapsed().as_secs_f64()})
            );
            Ok(())
        }
        RocketMqCmd::Consume(a) => {
            let s = settings(&a.namesrv)?;
            let got = rmq::consume(
                &s,
                &a.topic,
                &a.group,
                a.count,
                Duration::from_secs(a.timeout),
            )
            .await
            .map_err(anyhow::Error::msg)
            .context("consuming")?;
            for m in &got {
                println!(
                    "{}",
                    json!({"keys": m.keys, "tags": m.tags,
                           "body": String::from_utf8_lossy(&m.body), "msgId": m.msg_id,
                           "seq": m.properties.get("seq"), "broker": m.broker,
                           "queueId": m.queue_id, "queueOffset": m.queue_offset})
                );
            }
            if got.len() < a.count {
                bail!(
                    "{} of {} messages within {} s",
                    got.len(),
                    a.count,
                    a.timeout
                );
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bodies() {
        let b = super::body("p", 3, 0);
        assert_eq!(b, br#"{"prefix":"p","i":3,"pad":""}"#);
        assert_eq!(super::body("p", 3, 100).len(), 100);
    }
}
