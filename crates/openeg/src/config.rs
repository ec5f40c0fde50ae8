//! `openeg serve` configuration: a TOML file, every key overridable by `OPENEG_<KEY>`.
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
    #[serde(default = "default_node")]
    pub node_name: String,
    /// Base64 of a 32-byte key for secrets at rest; default: `data_dir/secret.key`.
    pub encryption_key: Option<String>,
    /// How long events (log segments) and traces are kept.
    #[serde(default = "default_retention_hours")]
    pub retention_hours: u64,
    /// Optional cap on each channel's log size.
    pub log_max_bytes_per_channel: Option<u64>,
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

impl Config {
    /// Loads the file (if any), then applies `OPENEG_*` environment overrides.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let text = match path {
            Some(p) => {
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
            }
            None => String::new(),
        };
        let mut cfg: Config = toml::from_str(&text).context("parsing the configuration")?;
        cfg.apply_env(|k| std::env::var(k).ok())?;
        Ok(cfg)
    }

    fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        if let Some(v) = get("OPENEG_LISTEN") {
            self.listen = v;
        }
        if let Some(v) = get("OPENEG_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = get("OPENEG_DATABASE_URL") {
            self.database_url = Some(v).filter(|s| !s.is_empty());
        }
        if let Some(v) = get("OPENEG_FUNCTIONGRAPH_ENDPOINT") {
            self.functiongraph_endpoint = Some(v);
        }
        if let Some(v) = get("OPENEG_SMN_ENDPOINT") {
            self.smn_endpoint = Some(v);
        }
        if let Some(v) = get("OPENEG_NODE_NAME") {
            self.node_name = v;
        }
        if let Some(v) = get("OPENEG_RETENTION_HOURS") {
            self.retention_hours = v
                .parse()
                .context("OPENEG_RETENTION_HOURS must be a number")?;
        }
        if let Some(v) = get("OPENEG_ENCRYPTION_KEY") {
            self.encryption_key = Some(v);
        }
        // OPENEG_CREDENTIALS="ak:sk:project_id:domain_id;ak2:sk2:project2:domain2"
        if let Some(v) = get("OPENEG_CREDENTIALS") {
            self.credentials = parse_credentials(&v)?;
        }
        Ok(())
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

/// Loads the development credential from `data_dir`, creating it (mode 0600) if absent.
/// Returns the credential and whether it was created now.
pub fn dev_credential(data_dir: &Path) -> anyhow::Result<(CredentialConfig, bool)> {
    let path = data_dir.join(DEV_CREDENTIALS_FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let f: DevFile =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if let Some(c) = f.credentials.into_iter().next() {
            return Ok((c, false));
        }
    }
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

    #[test]
    fn file_then_env() {
        let mut cfg: Config = toml::from_str(
            r#"
            listen = "127.0.0.1:9000"
            [[credentials]]
            access_key = "AK1"
            secret_key = "SK1"
            project_id = "p1"
            domain_id = "d1"
            [quotas]
            channel = 3
            "#,
        )
        .unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:9000");
        assert_eq!(cfg.credentials.len(), 1);
        assert_eq!(cfg.quotas().channel, 3);
        cfg.apply_env(|k| match k {
            "OPENEG_LISTEN" => Some("0.0.0.0:1".into()),
            "OPENEG_CREDENTIALS" => Some("A:S:p:d;B:T:q".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.listen, "0.0.0.0:1");
        assert_eq!(cfg.credentials.len(), 2);
        assert_eq!(cfg.credentials[1].project_id, "q");
        assert!(cfg
            .apply_env(|k| (k == "OPENEG_CREDENTIALS").then(|| "bad".into()))
            .is_err());
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
