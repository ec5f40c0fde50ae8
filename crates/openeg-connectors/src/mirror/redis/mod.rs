//! Redis-to-Redis replication (`dcs2dcs` event-router jobs): the broker side.
//!
//! * [`link`]: OpenEG as a replica of the source (our own client: PSYNC, the snapshot, the
//!   command stream, acknowledgements), on a thread of its own.
//! * [`rdb`]: the snapshot reader, which turns each key into a `RESTORE` payload.
//! * [`Sink`]: writes snapshot keys and stream commands into the target, pipelined, through
//!   the `redis` crate; [`Probe`] reads either side's figures (`INFO`).
//!
//! A standalone (or master/replica) Redis on each side: a Redis Cluster's slots are not
//! followed, so a cluster address is refused rather than half copied.

pub mod link;
pub mod rdb;

use ::redis::aio::MultiplexedConnection;
use ::redis::IntoConnectionInfo;
use link::Command;
use rdb::Entry;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// Where one side is: `host:port` and its password (revealed; deliberately no `Debug`).
#[derive(Clone)]
pub struct Endpoint {
    pub addr: String,
    pub password: Option<String>,
}

impl Endpoint {
    /// From a job's `source_dcs` / `sink_dcs` member (password revealed).
    pub fn of(member: &Value) -> Result<Endpoint, String> {
        let addr = member
            .get("address")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .ok_or("address (host:port) is required to run a DCS job")?;
        if addr.contains(',') {
            return Err(format!(
                "address {addr} lists several nodes: Redis Cluster instances are not copied by \
                 this OpenEG build (one standalone or master address)"
            ));
        }
        let addr = addr.trim_start_matches("redis://").to_string();
        match addr.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => {}
            _ => return Err(format!("address {addr} is not host:port")),
        }
        let password = member
            .get("password")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .map(str::to_string);
        Ok(Endpoint { addr, password })
    }

    fn client(&self) -> ::redis::RedisResult<::redis::Client> {
        let (host, port) = self.addr.rsplit_once(':').unwrap_or((&self.addr, "6379"));
        let port: u16 = port.parse().unwrap_or(6379);
        let mut info = ::redis::RedisConnectionInfo::default();
        if let Some(p) = &self.password {
            info = info.set_password(p.clone());
        }
        let ci = ::redis::ConnectionAddr::Tcp(host.trim_matches(['[', ']']).to_string(), port)
            .into_connection_info()?
            .set_redis_settings(info);
        ::redis::Client::open(ci)
    }

    async fn connect(&self) -> Result<MultiplexedConnection, String> {
        let cfg = ::redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(60)));
        self.client()
            .map_err(|e| e.to_string())?
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
            .map_err(|e| format!("{}: {e}", self.addr))
    }
}

/// Which source databases are copied, and into which target database (`allow_db`,
/// `db_mapping`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbMap {
    pub allow: Option<Vec<u32>>,
    pub mapping: HashMap<u32, u32>,
}

impl DbMap {
    /// The target database of source database `db`, or `None` when it is not copied.
    pub fn target(&self, db: u32) -> Option<u32> {
        if self.allow.as_ref().is_some_and(|a| !a.contains(&db)) {
            return None;
        }
        Some(self.mapping.get(&db).copied().unwrap_or(db))
    }
}

/// What a batch did on the target.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Commands the target ran.
    pub ok: u64,
    /// Commands the target refused (the job goes on; the first reason is kept).
    pub refused: u64,
    pub first_refusal: Option<String>,
}

/// The target, written through one connection (so a `SELECT` holds for what follows).
pub struct Sink {
    conn: MultiplexedConnection,
    db: Option<u32>,
    dbs: DbMap,
}

impl Sink {
    pub async fn connect(ep: &Endpoint, dbs: DbMap) -> Result<Sink, String> {
        Ok(Sink {
            conn: ep.connect().await?,
            db: None,
            dbs,
        })
    }

    fn select(&mut self, pipe: &mut ::redis::Pipeline, db: u32) {
        if self.db != Some(db) {
            pipe.cmd("SELECT").arg(db);
            self.db = Some(db);
        }
    }

    async fn run(&mut self, pipe: ::redis::Pipeline) -> Result<Applied, String> {
        if pipe.is_empty() {
            return Ok(Applied::default());
        }
        let mut pipe = pipe;
        let replies: Vec<::redis::RedisResult<::redis::Value>> =
            match pipe.ignore_errors().query_async(&mut self.conn).await {
                Ok(r) => r,
                Err(e) => {
                    // Where the connection is now is unknown: select again.
                    self.db = None;
                    return Err(e.to_string());
                }
            };
        let mut a = Applied::default();
        for r in replies {
            match r {
                Ok(_) => a.ok += 1,
                Err(e) => {
                    a.refused += 1;
                    a.first_refusal.get_or_insert_with(|| e.to_string());
                }
            }
        }
        Ok(a)
    }

    /// Writes snapshot keys (`RESTORE … REPLACE ABSTTL`: a key the target has is replaced).
    pub async fn restore(&mut self, entries: &[Entry]) -> Result<Applied, String> {
        let mut pipe = ::redis::pipe();
        for e in entries {
            let Some(db) = self.dbs.target(e.db) else {
                continue;
            };
            self.select(&mut pipe, db);
            pipe.cmd("RESTORE")
                .arg(&e.key[..])
                .arg(e.expire_at_ms.unwrap_or(0))
                .arg(&e.payload[..])
                .arg("REPLACE")
                .arg("ABSTTL");
        }
        self.run(pipe).await
    }

    /// Loads a function library of the snapshot.
    pub async fn load_function(&mut self, code: &[u8]) -> Result<Applied, String> {
        let mut pipe = ::redis::pipe();
        pipe.cmd("FUNCTION").arg("LOAD").arg("REPLACE").arg(code);
        self.run(pipe).await
    }

    /// Runs stream commands in order.
    pub async fn apply(&mut self, commands: &[Command]) -> Result<Applied, String> {
        let mut pipe = ::redis::pipe();
        for c in commands {
            let Some(db) = self.dbs.target(c.db) else {
                continue;
            };
            self.select(&mut pipe, db);
            let mut cmd = ::redis::Cmd::new();
            for a in &c.args {
                cmd.arg(&a[..]);
            }
            pipe.add_command(cmd);
        }
        self.run(pipe).await
    }
}

/// Reads a side's figures.
pub struct Probe {
    conn: MultiplexedConnection,
}

impl Probe {
    pub async fn connect(ep: &Endpoint) -> Result<Probe, String> {
        let mut conn = ep.connect().await?;
        ::redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| format!("{}: {e}", ep.addr))?;
        Ok(Probe { conn })
    }

    async fn info(&mut self, section: &str) -> Result<String, String> {
        ::redis::cmd("INFO")
            .arg(section)
            .query_async::<String>(&mut self.conn)
            .await
            .map_err(|e| e.to_string())
    }

    /// Keys in all databases (`INFO keyspace`).
    pub async fn key_count(&mut self) -> Result<u64, String> {
        Ok(info_keys(&self.info("keyspace").await?))
    }

    /// The source's `master_repl_offset` (how far its stream has gone).
    pub async fn repl_offset(&mut self) -> Result<u64, String> {
        let info = self.info("replication").await?;
        info_field(&info, "master_repl_offset")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| "INFO replication has no master_repl_offset".to_string())
    }

    /// Whether the server is a Redis Cluster node (`cluster_enabled:1`).
    pub async fn is_cluster(&mut self) -> Result<bool, String> {
        let info = self.info("cluster").await?;
        Ok(info_field(&info, "cluster_enabled") == Some("1"))
    }
}

fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// The sum of `keys=` over `INFO keyspace`'s `dbN:` lines.
fn info_keys(info: &str) -> u64 {
    info.lines()
        .filter(|l| l.starts_with("db"))
        .filter_map(|l| {
            l.split([':', ','])
                .find_map(|f| f.strip_prefix("keys="))
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoints_and_db_maps() {
        let e = Endpoint::of(&json!({"address": "127.0.0.1:6380", "password": "pw"})).unwrap();
        assert_eq!(
            (e.addr.as_str(), e.password.as_deref()),
            ("127.0.0.1:6380", Some("pw"))
        );
        assert!(Endpoint::of(&json!({"address": "a:1,b:2"})).is_err());
        assert!(Endpoint::of(&json!({"address": "nohost"})).is_err());
        assert!(Endpoint::of(&json!({})).is_err());
        let m = DbMap {
            allow: Some(vec![0, 2]),
            mapping: HashMap::from([(2, 5)]),
        };
        assert_eq!(
            (m.target(0), m.target(1), m.target(2)),
            (Some(0), None, Some(5))
        );
    }

    #[test]
    fn reads_info() {
        let info = "# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\ndb4:keys=10,expires=0\r\n";
        assert_eq!(info_keys(info), 13);
        assert_eq!(
            info_field("a:1\r\nmaster_repl_offset:77\r\n", "master_repl_offset"),
            Some("77")
        );
    }
}
