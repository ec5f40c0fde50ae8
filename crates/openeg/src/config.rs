//! `openeg serve` configuration: a TOML file, every key overridable by `OPENEG_<KEY>`
//! (`OPENEG_<TABLE>_<KEY>` inside a table, e.g. `OPENEG_QUOTAS_CHANNEL`).
//!
//! With no credentials configured, a development credential is created on first start in
//! `data_dir/credentials.toml` (mode 0600) and reused afterwards.

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct CredentialConfig {
    pub access_key: String,
    pub secret_key: String,
    pub project_id: String,
    #[serde(default)]
    pub domain_id: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    pub channel: Option<u64>,
    pub channel_subscription: Option<u64>,
    pub source: Option<u64>,
    pub source_rabbitmq: Option<u64>,
    pub source_rocketmq: Option<u64>,
    pub subscription: Option<u64>,
    pub connection: Option<u64>,
    pub private_endpoint: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub functiongraph_endpoint: Option<String>,
    pub smn_endpoint: Option<String>,
    /// The S3-compatible store event streams with an OBS sink write to (its base URL).
    pub obs_endpoint: Option<String>,
    /// The region OBS uploads are signed for; default `local-1`.
    pub obs_region: Option<String>,
    /// CA bundle (PEM file) Kafka TLS connections trust; default: the system's CA store.
    pub kafka_ca_file: Option<String>,
    #[serde(default = "default_node")]
    pub node_name: String,
    /// Base64 of a 32-byte key for secrets at rest; default: `data_dir/secret.key`.
    pub encryption_key: Option<String>,
    /// How long events (log segments) and traces are kept.
    #[serde(default = "default_retention_hours")]
    pub retention_hours: u64,
    /// Optional cap on each channel's log size.
    pub log_max_bytes_per_channel: Option<u64>,
    /// Where channel logs live: absent, the embedded log under `data_dir/log`;
    /// `kafka://host:port[,host:port...]`, one Kafka topic per channel.
    pub log_url: Option<String>,
    /// Partitions of the Kafka topics OpenEG creates for channels (`log_url = "kafka://…"`).
    pub log_partitions: Option<u64>,
    #[serde(default)]
    pub credentials: Vec<CredentialConfig>,
    #[serde(default)]
    pub quotas: QuotaConfig,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./openeg-data")
}
fn default_retention_hours() -> u64 {
    7 * 24
}
fn default_node() -> String {
    "openeg-0".into()
}

/// How an environment variable's text becomes a TOML value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvKind {
    Text,
    /// A non-negative integer.
    Count,
}

/// Every scalar key with its environment variable: `OPENEG_<KEY>` for top-level keys,
/// `OPENEG_<TABLE>_<KEY>` for keys of a table (`[quotas] channel` → `OPENEG_QUOTAS_CHANNEL`).
/// Credentials are the one exception: `OPENEG_CREDENTIALS` (see [`parse_credentials`]).
pub const ENV_KEYS: &[(Option<&str>, &str, EnvKind)] = &[
    (None, "listen", EnvKind::Text),
    (None, "data_dir", EnvKind::Text),
    (None, "database_url", EnvKind::Text),
    (None, "functiongraph_endpoint", EnvKind::Text),
    (None, "smn_endpoint", EnvKind::Text),
    (None, "obs_endpoint", EnvKind::Text),
    (None, "obs_region", EnvKind::Text),
    (None, "kafka_ca_file", EnvKind::Text),
    (None, "node_name", EnvKind::Text),
    (None, "encryption_key", EnvKind::Text),
    (None, "retention_hours", EnvKind::Count),
    (None, "log_max_bytes_per_channel", EnvKind::Count),
    (None, "log_url", EnvKind::Text),
    (None, "log_partitions", EnvKind::Count),
    (Some("quotas"), "channel", EnvKind::Count),
    (Some("quotas"), "channel_subscription", EnvKind::Count),
    (Some("quotas"), "source", EnvKind::Count),
    (Some("quotas"), "source_rabbitmq", EnvKind::Count),
    (Some("quotas"), "source_rocketmq", EnvKind::Count),
    (Some("quotas"), "subscription", EnvKind::Count),
    (Some("quotas"), "connection", EnvKind::Count),
    (Some("quotas"), "private_endpoint", EnvKind::Count),
];

/// The environment variable of a key of [`ENV_KEYS`].
pub fn env_name(table: Option<&str>, key: &str) -> String {
    match table {
        Some(t) => format!("OPENEG_{}_{}", t, key).to_ascii_uppercase(),
        None => format!("OPENEG_{key}").to_ascii_uppercase(),
    }
}

impl Config {
    /// Loads the file (if any), then applies `OPENEG_*` environment overrides.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let text = match path {
            Some(p) => {
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
            }
            None => String::new(),
        };
        Config::from_toml(&text, |k| std::env::var(k).ok())
    }

    /// Parses TOML text with the environment given by `get`. The overrides are applied to
    /// the TOML document before it is typed, so a variable is checked exactly like the key it
    /// replaces; an empty variable removes the key (its default applies).
    pub fn from_toml(text: &str, get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
        let mut doc: toml::Table = toml::from_str(text).context("parsing the configuration")?;
        for &(table, key, kind) in ENV_KEYS {
            let name = env_name(table, key);
            let Some(v) = get(&name) else { continue };
            let dst = match table {
                None => &mut doc,
                Some(t) => match doc
                    .entry(t)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                {
                    toml::Value::Table(tbl) => tbl,
                    _ => bail!("{t} must be a table"),
                },
            };
            if v.is_empty() {
                dst.remove(key);
                continue;
            }
            let value = match kind {
                EnvKind::Text => toml::Value::String(v),
                EnvKind::Count => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .and_then(|n| i64::try_from(n).ok())
                    .map(toml::Value::Integer)
                    .with_context(|| format!("{name} must be a non-negative integer"))?,
            };
            dst.insert(key.to_string(), value);
        }
        let mut cfg: Config = toml::Value::Table(doc)
            .try_into()
            .context("parsing the configuration")?;
        // OPENEG_CREDENTIALS="ak:sk:project_id:domain_id;ak2:sk2:project2:domain2"
        if let Some(v) = get("OPENEG_CREDENTIALS") {
            cfg.credentials = parse_credentials(&v)?;
        }
        Ok(cfg)
    }

    pub fn quotas(&self) -> openeg_server::Quotas {
        let mut q = openeg_server::Quotas::default();
        let c = &self.quotas;
        let set = |dst: &mut u64, v: Option<u64>| {
            if let Some(v) = v {
                *dst = v;
            }
        };
        set(&mut q.channel, c.channel);
        set(&mut q.channel_subscription, c.channel_subscription);
        set(&mut q.source, c.source);
        set(&mut q.source_rabbitmq, c.source_rabbitmq);
        set(&mut q.source_rocketmq, c.source_rocketmq);
        set(&mut q.subscription, c.subscription);
        set(&mut q.connection, c.connection);
        set(&mut q.private_endpoint, c.private_endpoint);
        q
    }
}

fn parse_credentials(v: &str) -> anyhow::Result<Vec<CredentialConfig>> {
    v.split(';')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let parts: Vec<&str> = s.trim().split(':').collect();
            match parts.as_slice() {
                [ak, sk, p] => Ok(CredentialConfig {
                    access_key: ak.to_string(),
                    secret_key: sk.to_string(),
                    project_id: p.to_string(),
                    domain_id: String::new(),
                }),
                [ak, sk, p, d] => Ok(CredentialConfig {
                    access_key: ak.to_string(),
                    secret_key: sk.to_string(),
                    project_id: p.to_string(),
                    domain_id: d.to_string(),
                }),
                _ => bail!("OPENEG_CREDENTIALS entries are ak:sk:project_id[:domain_id]"),
            }
        })
        .collect()
}

/// Checks credentials: unique AKs, project ids of the accepted shape, non-empty SKs.
pub fn check_credentials(creds: &[CredentialConfig]) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    for c in creds {
        if c.access_key.is_empty() || c.secret_key.is_empty() {
            bail!("a credential has an empty access_key or secret_key");
        }
        let ok = !c.project_id.is_empty()
            && c.project_id.len() <= 64
            && c.project_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            bail!(
                "credential {}: project_id must match ^[A-Za-z0-9_-]{{1,64}}$",
                c.access_key
            );
        }
        if !seen.insert(c.access_key.clone()) {
            bail!("credential {} is configured twice", c.access_key);
        }
    }
    Ok(())
}

pub const DEV_CREDENTIALS_FILE: &str = "credentials.toml";

#[derive(Deserialize, Serialize)]
struct DevFile {
    credentials: Vec<CredentialConfig>,
}

fn random_string(alphabet: &[u8], n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

/// The development credential stored in `data_dir`, if one was created; never creates one.
pub fn read_dev_credential(data_dir: &Path) -> anyhow::Result<Option<CredentialConfig>> {
    let path = data_dir.join(DEV_CREDENTIALS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let f: DevFile =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(f.credentials.into_iter().next())
}

/// Loads the development credential from `data_dir`, creating it (mode 0600) if absent.
/// Returns the credential and whether it was created now.
pub fn dev_credential(data_dir: &Path) -> anyhow::Result<(CredentialConfig, bool)> {
    if let Some(c) = read_dev_credential(data_dir)? {
        return Ok((c, false));
    }
    let path = data_dir.join(DEV_CREDENTIALS_FILE);
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const HEX: &[u8] = b"0123456789abcdef";
    let cred = CredentialConfig {
        access_key: random_string(UPPER, 20),
        secret_key: random_string(ALNUM, 40),
        project_id: random_string(HEX, 32),
        domain_id: random_string(HEX, 32),
    };
    let text = toml::to_string(&DevFile {
        credentials: vec![cred.clone()],
    })?;
    write_private(&path, &text)?;
    Ok((cred, true))
}

/// Writes a file readable by the owner only, atomically (temp file + rename).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn file_then_env() {
        let text = r#"
            listen = "127.0.0.1:9000"
            [[credentials]]
            access_key = "AK1"
            secret_key = "SK1"
            project_id = "p1"
            domain_id = "d1"
            [quotas]
            channel = 3
            "#;
        let cfg = Config::from_toml(text, no_env).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:9000");
        assert_eq!(cfg.credentials.len(), 1);
        assert_eq!(cfg.quotas().channel, 3);
        let cfg = Config::from_toml(text, |k| match k {
            "OPENEG_LISTEN" => Some("0.0.0.0:1".into()),
            "OPENEG_CREDENTIALS" => Some("A:S:p:d;B:T:q".into()),
            "OPENEG_QUOTAS_CHANNEL" => Some("7".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.listen, "0.0.0.0:1");
        assert_eq!(cfg.credentials.len(), 2);
        assert_eq!(cfg.credentials[1].project_id, "q");
        assert_eq!(cfg.quotas().channel, 7);
        assert!(
            Config::from_toml("", |k| (k == "OPENEG_CREDENTIALS").then(|| "bad".into())).is_err()
        );
    }

    #[test]
    fn every_key_has_an_environment_variable() {
        let env = |k: &str| {
            let v = match k {
                "OPENEG_LISTEN" => "0.0.0.0:1",
                "OPENEG_DATA_DIR" => "/d",
                "OPENEG_DATABASE_URL" => "postgres://x/y",
                "OPENEG_FUNCTIONGRAPH_ENDPOINT" => "http://fg",
                "OPENEG_SMN_ENDPOINT" => "http://smn",
                "OPENEG_OBS_ENDPOINT" => "http://obs",
                "OPENEG_OBS_REGION" => "r1",
                "OPENEG_KAFKA_CA_FILE" => "/ca.pem",
                "OPENEG_NODE_NAME" => "n1",
                "OPENEG_ENCRYPTION_KEY" => "k",
                "OPENEG_RETENTION_HOURS" => "2",
                "OPENEG_LOG_MAX_BYTES_PER_CHANNEL" => "3",
                "OPENEG_LOG_URL" => "kafka://k1:9092,k2:9092",
                "OPENEG_LOG_PARTITIONS" => "6",
                "OPENEG_QUOTAS_CHANNEL" => "11",
                "OPENEG_QUOTAS_CHANNEL_SUBSCRIPTION" => "12",
                "OPENEG_QUOTAS_SOURCE" => "13",
                "OPENEG_QUOTAS_SOURCE_RABBITMQ" => "14",
                "OPENEG_QUOTAS_SOURCE_ROCKETMQ" => "15",
                "OPENEG_QUOTAS_SUBSCRIPTION" => "16",
                "OPENEG_QUOTAS_CONNECTION" => "17",
                "OPENEG_QUOTAS_PRIVATE_ENDPOINT" => "18",
                "OPENEG_CREDENTIALS" => "A:S:p:d",
                _ => return None,
            };
            Some(v.to_string())
        };
        let names: Vec<String> = ENV_KEYS.iter().map(|&(t, k, _)| env_name(t, k)).collect();
        for n in &names {
            assert!(env(n).is_some(), "{n} is not exercised here");
        }
        // Exhaustive patterns: a new key fails to compile until it is listed here (and in
        // ENV_KEYS, or the assertion on its value fails).
        let Config {
            listen,
            data_dir,
            database_url,
            functiongraph_endpoint,
            smn_endpoint,
            obs_endpoint,
            obs_region,
            kafka_ca_file,
            node_name,
            encryption_key,
            retention_hours,
            log_max_bytes_per_channel,
            log_url,
            log_partitions,
            credentials,
            quotas,
        } = Config::from_toml("listen = \"127.0.0.1:1\"\n[quotas]\nchannel = 1\n", env).unwrap();
        let QuotaConfig {
            channel,
            channel_subscription,
            source,
            source_rabbitmq,
            source_rocketmq,
            subscription,
            connection,
            private_endpoint,
        } = quotas;
        assert_eq!(listen, "0.0.0.0:1");
        assert_eq!(data_dir, PathBuf::from("/d"));
        assert_eq!(database_url.as_deref(), Some("postgres://x/y"));
        assert_eq!(functiongraph_endpoint.as_deref(), Some("http://fg"));
        assert_eq!(smn_endpoint.as_deref(), Some("http://smn"));
        assert_eq!(obs_endpoint.as_deref(), Some("http://obs"));
        assert_eq!(obs_region.as_deref(), Some("r1"));
        assert_eq!(kafka_ca_file.as_deref(), Some("/ca.pem"));
        assert_eq!(node_name, "n1");
        assert_eq!(encryption_key.as_deref(), Some("k"));
        assert_eq!(retention_hours, 2);
        assert_eq!(log_max_bytes_per_channel, Some(3));
        assert_eq!(log_url.as_deref(), Some("kafka://k1:9092,k2:9092"));
        assert_eq!(log_partitions, Some(6));
        assert_eq!(credentials.len(), 1);
        let got = [
            channel,
            channel_subscription,
            source,
            source_rabbitmq,
            source_rocketmq,
            subscription,
            connection,
            private_endpoint,
        ];
        assert_eq!(got, [11, 12, 13, 14, 15, 16, 17, 18].map(Some));
    }

    #[test]
    fn environment_values_are_checked() {
        for bad in ["abc", "-1", "1.5", "99999999999999999999"] {
            let r = Config::from_toml("", |k| (k == "OPENEG_QUOTAS_CHANNEL").then(|| bad.into()));
            let e = format!("{:#}", r.unwrap_err());
            assert!(e.contains("OPENEG_QUOTAS_CHANNEL"), "{bad}: {e}");
        }
        assert!(
            Config::from_toml("", |k| (k == "OPENEG_RETENTION_HOURS").then(|| "x".into())).is_err()
        );
        // An empty variable unsets the key: its default applies.
        let cfg = Config::from_toml(
            "database_url = \"postgres://a/b\"\nretention_hours = 5\n",
            |k| matches!(k, "OPENEG_DATABASE_URL" | "OPENEG_RETENTION_HOURS").then(String::new),
        )
        .unwrap();
        assert_eq!(cfg.database_url, None);
        assert_eq!(cfg.retention_hours, 7 * 24);
        // A table key given a scalar is an error, not a panic.
        assert!(
            Config::from_toml("quotas = 1", |k| (k == "OPENEG_QUOTAS_CHANNEL")
                .then(|| "1".into()))
            .is_err()
        );
    }

    #[test]
    fn example_file_parses_and_lists_every_key() {
        let text = include_str!("../../../openeg.example.toml");
        let cfg = Config::from_toml(text, no_env).unwrap();
        check_credentials(&cfg.credentials).unwrap();
        assert_eq!(
            cfg.database_url, None,
            "the PostgreSQL line is commented out"
        );
        // Every key appears, commented out or not, so the file documents all of them.
        for &(table, key, _) in ENV_KEYS {
            let listed = text.lines().any(|l| {
                let l = l.trim_start_matches(['#', ' ']);
                l.starts_with(&format!("{key} =")) && text.contains(env_name(table, key).as_str())
            });
            assert!(
                listed,
                "{key} ({}) is not in openeg.example.toml",
                env_name(table, key)
            );
        }
        for t in ["[quotas]", "[[credentials]]", "OPENEG_CREDENTIALS"] {
            assert!(text.contains(t), "{t}");
        }
    }

    #[test]
    fn readme_configuration_example_parses() {
        let readme = include_str!("../../../README.md");
        let mut blocks = Vec::new();
        let mut cur: Option<String> = None;
        for line in readme.lines() {
            match (&mut cur, line.trim()) {
                (None, "```toml") => cur = Some(String::new()),
                (Some(b), "```") => {
                    blocks.push(std::mem::take(b));
                    cur = None;
                }
                (Some(b), _) => {
                    b.push_str(line);
                    b.push('\n');
                }
                _ => {}
            }
        }
        assert!(!blocks.is_empty(), "README.md has no ```toml block");
        for b in blocks {
            let cfg = Config::from_toml(&b, no_env).unwrap();
            check_credentials(&cfg.credentials).unwrap();
            assert_eq!(
                cfg.database_url, None,
                "copying the example must not need PostgreSQL"
            );
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
    }

    #[test]
    fn credential_checks() {
        let c = |ak: &str, p: &str| CredentialConfig {
            access_key: ak.into(),
            secret_key: "s".into(),
            project_id: p.into(),
            domain_id: String::new(),
        };
        assert!(check_credentials(&[c("A", "p")]).is_ok());
        assert!(check_credentials(&[c("A", "p"), c("A", "q")]).is_err());
        assert!(check_credentials(&[c("A", "p/x")]).is_err());
    }

    #[test]
    fn dev_credential_is_created_once_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("openeg-cfg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (a, created) = dev_credential(&dir).unwrap();
        assert!(created);
        let (b, created2) = dev_credential(&dir).unwrap();
        assert!(!created2);
        assert_eq!(a, b);
        assert_eq!(a.project_id.len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(DEV_CREDENTIALS_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
