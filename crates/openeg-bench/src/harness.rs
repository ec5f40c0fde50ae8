//! What the self-contained benches share: an `openeg serve` of their own (a temporary
//! data_dir, a generated credential, a free port, SQLite or a given PostgreSQL database),
//! used by `crash` (which SIGKILLs and restarts it) and by the broker benches (so a run is
//! repeatable), and the summary of repeated runs.

use super::Cred;
use anyhow::{bail, Context};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long `openeg serve` may take to answer after a (re)start.
const START_TIMEOUT: Duration = Duration::from_secs(300);

pub fn short_id(n: usize) -> String {
    uuid::Uuid::new_v4().simple().to_string()[..n].to_string()
}

/// The `openeg` binary: `given`, else the one beside this executable (`target/release/`).
pub fn openeg_bin(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .context("the bench binary has no directory")?
            .join("openeg"),
    };
    std::fs::canonicalize(&path).with_context(|| format!("the openeg binary {}", path.display()))
}

pub struct Server {
    bin: PathBuf,
    config: PathBuf,
    pub log: PathBuf,
    pub base: String,
    child: Option<tokio::process::Child>,
    starts: u32,
    probe: reqwest::Client,
    /// When each SIGKILL was sent.
    pub kills: Vec<Instant>,
}

impl Server {
    /// Writes the configuration of a server in `dir` (data in `dir/data`, log in
    /// `dir/openeg.log`) with a fresh credential on a free port; nothing runs yet.
    pub fn configure(
        bin: &Path,
        dir: &Path,
        database_url: Option<&str>,
    ) -> anyhow::Result<(Server, Cred)> {
        Self::configure_with(bin, dir, database_url, None, toml::Table::new())
    }

    /// [`Server::configure`] with a given credential (nodes of one cluster share one) and
    /// extra configuration keys (`log_url`, `node_name`, …).
    pub fn configure_with(
        bin: &Path,
        dir: &Path,
        database_url: Option<&str>,
        cred: Option<Cred>,
        extra: toml::Table,
    ) -> anyhow::Result<(Server, Cred)> {
        std::fs::create_dir_all(dir.join("data"))
            .with_context(|| format!("creating {}", dir.display()))?;
        // A free port, reused by every restart.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let cred = cred.unwrap_or_else(|| Cred {
            access_key: format!("BENCH{}", short_id(15).to_ascii_uppercase()),
            secret_key: format!("{}{}", short_id(32), short_id(32)),
            project_id: short_id(32),
        });
        let mut cfg = extra;
        cfg.insert("listen".into(), format!("127.0.0.1:{port}").into());
        cfg.insert(
            "data_dir".into(),
            dir.join("data").display().to_string().into(),
        );
        if let Some(url) = database_url {
            cfg.insert("database_url".into(), url.into());
        }
        let mut c = toml::Table::new();
        c.insert("access_key".into(), cred.access_key.clone().into());
        c.insert("secret_key".into(), cred.secret_key.clone().into());
        c.insert("project_id".into(), cred.project_id.clone().into());
        cfg.insert(
            "credentials".into(),
            toml::Value::Array(vec![toml::Value::Table(c)]),
        );
        let config = dir.join("openeg.toml");
        std::fs::write(&config, toml::to_string(&cfg)?)?;
        let server = Server {
            bin: bin.to_path_buf(),
            config,
            log: dir.join("openeg.log"),
            base: format!("http://127.0.0.1:{port}"),
            child: None,
            starts: 0,
            kills: Vec::new(),
            probe: reqwest::Client::builder()
                .timeout(Duration::from_secs(1))
                .build()?,
        };
        Ok((server, cred))
    }

    /// Spawns `openeg serve` and waits until its health endpoint answers 200; returns the
    /// time from spawn to that answer.
    pub async fn start(&mut self) -> anyhow::Result<Duration> {
        self.starts += 1;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        writeln!(log, "\n===== openeg-bench: start #{} =====", self.starts)?;
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .env("NO_COLOR", "1")
            .kill_on_drop(true);
        // The config file is the whole configuration: OPENEG_* variables would override it.
        for (k, _) in std::env::vars_os() {
            if let Some(k) = k.to_str() {
                if k.starts_with("OPENEG_") && k != "OPENEG_LOG" {
                    cmd.env_remove(k);
                }
            }
        }
        let t0 = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        let health = format!("{}/openeg/v1/health", self.base);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("openeg serve exited with {status} during start-up");
            }
            if let Ok(r) = self.probe.get(&health).send().await {
                if r.status().is_success() {
                    self.child = Some(child);
                    return Ok(t0.elapsed());
                }
            }
            if t0.elapsed() > START_TIMEOUT {
                let _ = child.start_kill();
                bail!("openeg serve did not answer within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// SIGKILL (no shutdown of any kind) and reap.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            self.kills.push(Instant::now());
            c.start_kill().context("SIGKILL")?;
            c.wait().await?;
        }
        Ok(())
    }
}

/// A started server in a temporary directory, for one benchmark run: [`OwnServer::finish`]
/// stops it and removes the directory (kept when asked, or when the run failed).
pub struct OwnServer {
    pub server: Server,
    pub cred: Cred,
    pub dir: PathBuf,
}

impl OwnServer {
    pub async fn start(bin: Option<&Path>, tag: &str) -> anyhow::Result<OwnServer> {
        let bin = openeg_bin(bin)?;
        let dir = std::env::temp_dir().join(format!("openeg-{tag}-{}", short_id(12)));
        let (mut server, cred) = Server::configure(&bin, &dir, None)?;
        server.start().await?;
        Ok(OwnServer { server, cred, dir })
    }

    pub async fn finish(mut self, keep: bool) -> anyhow::Result<()> {
        self.server.kill().await?;
        if keep {
            eprintln!("kept: {}", self.dir.display());
        } else {
            std::fs::remove_dir_all(&self.dir)
                .with_context(|| format!("removing {}", self.dir.display()))?;
        }
        Ok(())
    }
}

impl Server {
    /// The server's Prometheus counters and gauges (`GET /metrics`), by name; histogram
    /// series and labelled series are left out.
    pub async fn metrics(&self) -> anyhow::Result<std::collections::HashMap<String, f64>> {
        let text = self
            .probe
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.contains('{'))
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_string(), v.trim().parse().ok()?))
            })
            .collect())
    }
}

/// Median, minimum and maximum of repeated measurements (NaN when there are none).
pub fn summary(values: &[f64]) -> (f64, f64, f64) {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (median, v[0], v[n - 1])
}
