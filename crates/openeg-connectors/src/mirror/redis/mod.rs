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
        // A password belongs in `password`: an address is shown in syncDetail and logs.
        if addr.contains(['@', '/', '?']) {
            return Err("address must be host:port (credentials go in password)".into());
        }
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
    /// Whether every database is copied into the one of the same number.
    pub fn is_identity(&self) -> bool {
        self.allow.is_none() && self.mapping.iter().all(|(a, b)| a == b)
    }

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

/// Error codes that say the target takes no writes at all now (memory full, a replica, loading,
/// a script running, persistence failing, no permission): the batch is not applied and the
/// session fails, so the position does not move past it. Other refusals concern one command.
const SYSTEMIC: &[&str] = &[
    "OOM",
    "READONLY",
    "LOADING",
    "BUSY",
    "MISCONF",
    "NOPERM",
    "NOAUTH",
    "MASTERDOWN",
    "CLUSTERDOWN",
    "TRYAGAIN",
    "MOVED",
    "ASK",
    "NOREPLICAS",
];

fn systemic(code: &str) -> bool {
    SYSTEMIC.contains(&code)
}

/// How a stream command goes to the target when the databases are not copied one to one.
enum Rewrite {
    Keep,
    Replace(Vec<Vec<u8>>),
    Skip,
    /// Not applied, counted as refused with the reason.
    Refuse(&'static str),
}

fn db_arg(a: &[u8]) -> Option<u32> {
    std::str::from_utf8(a).ok()?.parse().ok()
}

/// Commands that name a database (MOVE, COPY … DB, SWAPDB, FLUSHALL) under `allow_db` /
/// `db_mapping`: translated where they can be, else refused.
fn rewrite(dbs: &DbMap, args: &[Vec<u8>]) -> Rewrite {
    let name = args
        .first()
        .map(|a| a.to_ascii_uppercase())
        .unwrap_or_default();
    match name.as_slice() {
        b"MOVE" if args.len() == 3 => match db_arg(&args[2]).map(|d| dbs.target(d)) {
            Some(Some(to)) => {
                let mut a = args.to_vec();
                a[2] = to.to_string().into_bytes();
                Rewrite::Replace(a)
            }
            // Moved out of what is copied: gone from the copy.
            Some(None) => Rewrite::Replace(vec![b"DEL".to_vec(), args[1].clone()]),
            None => Rewrite::Keep,
        },
        b"COPY" => {
            let at = args.iter().position(|a| a.eq_ignore_ascii_case(b"DB"));
            match at.and_then(|i| Some((i, db_arg(args.get(i + 1)?)?))) {
                None => Rewrite::Keep,
                Some((i, d)) => match dbs.target(d) {
                    Some(to) => {
                        let mut a = args.to_vec();
                        a[i + 1] = to.to_string().into_bytes();
                        Rewrite::Replace(a)
                    }
                    None => Rewrite::Skip,
                },
            }
        }
        b"SWAPDB" => Rewrite::Refuse("SWAPDB cannot be applied under allow_db / db_mapping"),
        b"FLUSHALL" => Rewrite::Refuse(
            "FLUSHALL is not applied under allow_db / db_mapping (it would empty target \
             databases the job does not copy into)",
        ),
        _ => Rewrite::Keep,
    }
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

    fn select(&mut self, pipe: &mut ::redis::Pipeline, selects: &mut Vec<usize>, db: u32) {
        if self.db != Some(db) {
            selects.push(pipe.len());
            pipe.cmd("SELECT").arg(db);
            self.db = Some(db);
        }
    }

    /// Runs `pipe`. `selects` are the indexes of its `SELECT`s: one refused means later
    /// commands would land in another database, so the batch fails.
    async fn run(
        &mut self,
        pipe: ::redis::Pipeline,
        selects: &[usize],
        mut a: Applied,
    ) -> Result<Applied, String> {
        if pipe.is_empty() {
            return Ok(a);
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
        let mut fatal: Option<String> = None;
        let note = |a: &mut Applied, fatal: &mut Option<String>, code: &str, text: String| {
            a.refused += 1;
            if systemic(code) && fatal.is_none() {
                *fatal = Some(text.clone());
            }
            a.first_refusal.get_or_insert(text);
        };
        for (i, r) in replies.into_iter().enumerate() {
            match r {
                // An EXEC's replies hold its commands' errors.
                Ok(::redis::Value::Array(items)) => {
                    a.ok += 1;
                    for v in items {
                        if let ::redis::Value::ServerError(e) = v {
                            note(
                                &mut a,
                                &mut fatal,
                                e.code(),
                                format!("{}: {}", e.code(), e.details().unwrap_or("")),
                            );
                        }
                    }
                }
                Ok(_) => a.ok += 1,
                Err(e) => {
                    let code = e.code().unwrap_or("").to_string();
                    if selects.contains(&i) && fatal.is_none() {
                        fatal = Some(format!("the target refused SELECT: {e}"));
                    }
                    note(&mut a, &mut fatal, &code, e.to_string());
                }
            }
        }
        if a.refused > 0 {
            // A refused or discarded SELECT leaves the connection in a database we cannot
            // be sure of.
            self.db = None;
        }
        match fatal {
            Some(e) => Err(e),
            None => Ok(a),
        }
    }

    /// Writes snapshot keys (`RESTORE … REPLACE ABSTTL`: a key the target has is replaced).
    pub async fn restore(&mut self, entries: &[Entry]) -> Result<Applied, String> {
        let mut pipe = ::redis::pipe();
        let mut selects = Vec::new();
        for e in entries {
            let Some(db) = self.dbs.target(e.db) else {
                continue;
            };
            self.select(&mut pipe, &mut selects, db);
            pipe.cmd("RESTORE")
                .arg(&e.key[..])
                .arg(e.expire_at_ms.unwrap_or(0))
                .arg(&e.payload[..])
                .arg("REPLACE")
                .arg("ABSTTL");
        }
        self.run(pipe, &selects, Applied::default()).await
    }

    /// Loads a function library of the snapshot.
    pub async fn load_function(&mut self, code: &[u8]) -> Result<Applied, String> {
        let mut pipe = ::redis::pipe();
        pipe.cmd("FUNCTION").arg("LOAD").arg("REPLACE").arg(code);
        self.run(pipe, &[], Applied::default()).await
    }

    /// Runs stream commands in order. MULTI / EXEC / DISCARD always go (a transaction
    /// left open would swallow every later command); under a database map, commands that
    /// name a database are translated or refused ([`rewrite`]).
    pub async fn apply(&mut self, commands: &[Command]) -> Result<Applied, String> {
        let mut pipe = ::redis::pipe();
        let mut selects = Vec::new();
        let mut a = Applied::default();
        let identity = self.dbs.is_identity();
        for c in commands {
            let db = match self.dbs.target(c.db) {
                Some(db) => db,
                None => {
                    // Only commands of databases not copied pay for the name check.
                    let control = c.args.first().filter(|n| {
                        [&b"MULTI"[..], b"EXEC", b"DISCARD"]
                            .iter()
                            .any(|k| n.eq_ignore_ascii_case(k))
                    });
                    if let Some(name) = control {
                        let mut cmd = ::redis::Cmd::new();
                        cmd.arg(&name[..]);
                        pipe.add_command(cmd);
                    }
                    continue;
                }
            };
            self.select(&mut pipe, &mut selects, db);
            let replaced;
            let args = match if identity {
                Rewrite::Keep
            } else {
                rewrite(&self.dbs, &c.args)
            } {
                Rewrite::Keep => &c.args,
                Rewrite::Replace(r) => {
                    replaced = r;
                    &replaced
                }
                Rewrite::Skip => continue,
                Rewrite::Refuse(why) => {
                    a.refused += 1;
                    a.first_refusal.get_or_insert_with(|| why.to_string());
                    continue;
                }
            };
            let mut cmd = ::redis::Cmd::new();
            for x in args {
                cmd.arg(&x[..]);
            }
            pipe.add_command(cmd);
        }
        self.run(pipe, &selects, a).await
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
        let e = Endpoint::of(&json!({"address": "redis://:pw@h:1"}))
            .err()
            .unwrap();
        assert!(!e.contains("pw"), "{e}");
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
    fn commands_naming_a_database_follow_the_map() {
        let m = DbMap {
            allow: Some(vec![0, 2]),
            mapping: HashMap::from([(2, 5)]),
        };
        assert!(!m.is_identity());
        assert!(DbMap::default().is_identity());
        let args = |v: &[&str]| v.iter().map(|a| a.as_bytes().to_vec()).collect::<Vec<_>>();
        let replaced = |r: Rewrite| match r {
            Rewrite::Replace(a) => a,
            _ => panic!("a rewrite"),
        };
        assert_eq!(
            replaced(rewrite(&m, &args(&["MOVE", "k", "2"]))),
            args(&["MOVE", "k", "5"])
        );
        assert_eq!(
            replaced(rewrite(&m, &args(&["move", "k", "1"]))),
            args(&["DEL", "k"])
        );
        assert_eq!(
            replaced(rewrite(
                &m,
                &args(&["COPY", "a", "b", "DB", "2", "REPLACE"])
            )),
            args(&["COPY", "a", "b", "DB", "5", "REPLACE"])
        );
        assert!(matches!(
            rewrite(&m, &args(&["COPY", "a", "b", "db", "7"])),
            Rewrite::Skip
        ));
        assert!(matches!(
            rewrite(&m, &args(&["FLUSHALL"])),
            Rewrite::Refuse(_)
        ));
        assert!(matches!(
            rewrite(&m, &args(&["SWAPDB", "0", "2"])),
            Rewrite::Refuse(_)
        ));
        assert!(matches!(
            rewrite(&m, &args(&["SET", "k", "v"])),
            Rewrite::Keep
        ));
        assert!(systemic("OOM") && systemic("READONLY") && !systemic("WRONGTYPE"));
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
