//! The `openeg` binary: thin glue over the workspace crates (config, serve, admin commands).

mod config;
mod rules_cli;

use anyhow::Context;
use clap::{Parser, Subcommand};
use config::{Config, CredentialConfig};
use std::path::PathBuf;
use std::sync::Arc;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "openeg",
    version,
    about = "Self-hosted, wire-compatible Huawei Cloud EventGrid"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the server.
    Serve {
        /// TOML configuration file; every key can also be set as OPENEG_<KEY>
        /// (OPENEG_<TABLE>_<KEY> inside a table), see openeg.example.toml.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Log lines as text (colours only on a terminal) or as one JSON object per line.
        #[arg(long, value_enum, env = "OPENEG_LOG_FORMAT", default_value = "text")]
        log_format: LogFormat,
    },
    /// Print the access key, project id and endpoint of the credentials; never creates one
    /// (`serve` creates the development credential on its first start).
    Credentials {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Also print the secret key (development credential only).
        #[arg(long)]
        show_secret: bool,
    },
    /// Filter-rule tools: test rules against events, benchmark the matcher.
    #[command(subcommand)]
    Rules(rules_cli::RulesCmd),
    /// Print the OpenAPI 3 document of the API (as served at /openeg/v1/openapi.json).
    Openapi,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// How often a node on PostgreSQL reloads its configuration even without a change
/// notification (a lost notification must not leave it stale for long).
const CONFIG_SAFETY_POLL: std::time::Duration = std::time::Duration::from_secs(30);

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Serve { config, log_format } => serve(config, log_format),
        Cmd::Credentials {
            config,
            show_secret,
        } => credentials(config, show_secret),
        Cmd::Rules(cmd) => rules_cli::run(cmd),
        Cmd::Openapi => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", openeg_server::openapi_document())?;
            Ok(out.flush()?)
        }
    }
}

/// The configured credentials, or the development one from `data_dir` (created if needed).
fn effective_credentials(cfg: &Config) -> anyhow::Result<(Vec<CredentialConfig>, bool)> {
    if !cfg.credentials.is_empty() {
        config::check_credentials(&cfg.credentials)?;
        return Ok((cfg.credentials.clone(), false));
    }
    let (c, created) = config::dev_credential(&cfg.data_dir)?;
    Ok((vec![c], created))
}

fn endpoint(listen: &str) -> String {
    format!("http://{listen}")
}

fn print_dev_credential(cfg: &Config, c: &CredentialConfig) {
    let path = cfg.data_dir.join(config::DEV_CREDENTIALS_FILE);
    println!("development credential:");
    println!("  endpoint:    {}", endpoint(&cfg.listen));
    println!("  access key:  {}", c.access_key);
    println!("  project id:  {}", c.project_id);
    println!(
        "  secret key:  in {} (or: openeg credentials --show-secret)",
        path.display()
    );
}

fn credentials(path: Option<PathBuf>, show_secret: bool) -> anyhow::Result<()> {
    let cfg = Config::load(path.as_deref())?;
    if !cfg.credentials.is_empty() {
        config::check_credentials(&cfg.credentials)?;
        for c in &cfg.credentials {
            println!(
                "access key: {}  project id: {}  endpoint: {}",
                c.access_key,
                c.project_id,
                endpoint(&cfg.listen)
            );
        }
        if show_secret {
            eprintln!("the secret keys of configured credentials are in the configuration");
        }
        return Ok(());
    }
    let Some(c) = config::read_dev_credential(&cfg.data_dir)? else {
        anyhow::bail!(
            "no credential yet: none is configured and {} does not exist; \
             run `openeg serve` once to create the development credential, \
             or configure [[credentials]] (see openeg.example.toml)",
            cfg.data_dir.join(config::DEV_CREDENTIALS_FILE).display()
        );
    };
    print_dev_credential(&cfg, &c);
    if show_secret {
        println!("  secret:      {}", c.secret_key);
    }
    Ok(())
}

fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OPENEG_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match format {
        // Escape codes only for a person at a terminal, never into files or collectors.
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

fn serve(path: Option<PathBuf>, log_format: LogFormat) -> anyhow::Result<()> {
    init_logging(log_format);
    let cfg = Config::load(path.as_deref())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let result = rt.block_on(run_server(cfg));
    // Dropping the runtime would wait for every blocking call still running (a broker request
    // of a stopped source, a Kafka client closing) however long it takes; a stopped server
    // must exit promptly.
    rt.shutdown_timeout(SHUTDOWN_GRACE);
    result
}

/// How long a stopped server waits for blocking calls still running before it exits.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Name of the shared check value sealed with the secrets key (`cluster_settings`).
const KEY_CHECK: &str = "encryption_key_check";
const KEY_CHECK_TEXT: &str = "openeg: secrets key check";

/// Every process on one database must seal secrets with one key: a secret stored through one
/// node is read by the others. The first process stores a value sealed with its key; a
/// process whose key cannot open it refuses to start.
async fn check_encryption_key(
    store: &dyn openeg_store::ClusterStore,
    secrets: &openeg_store::secrets::SecretBox,
) -> anyhow::Result<()> {
    let sealed = store
        .setting_or_insert(KEY_CHECK, &secrets.encrypt(KEY_CHECK_TEXT))
        .await
        .context("reading the secrets key check from the database")?;
    match secrets.decrypt(&sealed) {
        Ok(t) if t == KEY_CHECK_TEXT => Ok(()),
        _ => anyhow::bail!(
            "this node's secrets key differs from the one the database was first used with: \
             every node on one database must have the same `encryption_key` \
             (OPENEG_ENCRYPTION_KEY), or secrets stored through one node cannot be read by \
             another"
        ),
    }
}

async fn run_server(cfg: Config) -> anyhow::Result<()> {
    let (creds, created) = effective_credentials(&cfg)?;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let secrets = match &cfg.encryption_key {
        Some(k) => {
            openeg_store::secrets::SecretBox::from_key_base64(k).context("encryption_key")?
        }
        None => openeg_store::secrets::SecretBox::load_or_create(&cfg.data_dir)
            .context("loading the secret key")?,
    };
    let stores = openeg_store::open_stores(cfg.database_url.as_deref(), &cfg.data_dir)
        .await
        .context("opening the metadata store")?;
    if cfg.database_url.is_some() {
        check_encryption_key(&*stores.cluster, &secrets).await?;
    }
    let retention = std::time::Duration::from_secs(cfg.retention_hours.max(1) * 3600);
    let mut log_cfg = openeg_log::LogConfig::default();
    log_cfg.retention_max_age = Some(retention);
    log_cfg.retention_max_bytes = cfg.log_max_bytes_per_channel;
    // Events the router has not passed are kept past retention rather than lost unrouted.
    log_cfg.retention_hold_group = Some(openeg_engine::ROUTER_GROUP.to_string());
    // Test-only fault-injection mock: while <dir>/log-sync exists, every fsync of appended
    // events fails.
    if let Some(dir) = std::env::var_os("OPENEG_FAULT_INJECTION_DIR") {
        let switch = std::path::Path::new(&dir).join("log-sync");
        tracing::warn!(switch = %switch.display(), "FAULT INJECTION ENABLED (tests only): log syncs fail while this file exists");
        log_cfg.fault_injection = Some(openeg_log::FaultInjection::syncs_fail_while_exists(switch));
    }
    // The embedded log, or a Kafka cluster's topics; routers start for every channel that
    // may hold events.
    let (log, embedded, topics): (Arc<dyn openeg_log::EventLog>, _, Vec<String>) =
        match kafka_log_config(&cfg)? {
            None => {
                let log = Arc::new(
                    openeg_log::SegmentLog::open(cfg.data_dir.join("log"), log_cfg)
                        .await
                        .context("opening the event log")?,
                );
                let topics = log.topics();
                (log.clone(), Some(log), topics)
            }
            Some(kcfg) => {
                let servers = kcfg.bootstrap_servers.clone();

                let log = openeg_log_kafka::KafkaLog::connect(kcfg)
                    .await
                    .with_context(|| format!("connecting to the Kafka event log at {servers}"))?;
                tracing::info!(%servers, "channel logs on Kafka");
                let channels = stores
                    .meta
                    .list_global(openeg_store::Kind::Channel)
                    .await
                    .context("listing channels")?;
                let topics = channels
                    .iter()
                    .map(|c| openeg_engine::topic(&c.project_id, &c.id))
                    .collect();
                (Arc::new(log), None, topics)
            }
        };
    // On Kafka the log is shared: nodes on one database route its partitions under leases.
    let cluster = embedded
        .is_none()
        .then(|| openeg_engine::cluster::ClusterConfig {
            node: cfg.node_name.clone(),
            address: cfg.listen.clone(),
            store: stores.cluster.clone(),
        });
    let engine_cfg = openeg_engine::EngineConfig {
        functiongraph_endpoint: cfg.functiongraph_endpoint.clone(),
        smn_endpoint: cfg.smn_endpoint.clone(),
        obs_endpoint: cfg.obs_endpoint.clone(),
        obs_region: cfg.obs_region.clone(),
        kafka_ca_file: cfg.kafka_ca_file.clone(),
        node_name: cfg.node_name.clone(),
        // Reading an event back from Kafka is a broker fetch: keep recent ones for retries.
        recent_events_bytes: if cluster.is_some() {
            openeg_engine::RECENT_EVENTS_BYTES
        } else {
            0
        },
        cluster,
        project_domains: creds
            .iter()
            .map(|c| (c.project_id.clone(), c.domain_id.clone()))
            .collect(),
        ..Default::default()
    };
    let engine = openeg_engine::Engine::start(
        stores.meta.clone(),
        stores.delivery.clone(),
        log.clone(),
        secrets.clone(),
        engine_cfg,
        topics,
    )
    .await
    .map_err(|e| anyhow::anyhow!(e))?;
    // Nodes sharing the PostgreSQL store hear each other's configuration changes.
    if let Some(pg) = &stores.postgres {
        let changes = pg
            .listen_changes()
            .await
            .context("listening to the store's change feed")?;
        engine.follow_changes(changes, CONFIG_SAFETY_POLL);
    }
    let server_cfg = openeg_server::ServerConfig {
        node_name: cfg.node_name.clone(),
        credentials: creds
            .iter()
            .map(|c| openeg_server::Credential {
                access_key: c.access_key.clone(),
                secret_key: c.secret_key.clone(),
                project_id: c.project_id.clone(),
                domain_id: c.domain_id.clone(),
            })
            .collect(),
        quotas: cfg.quotas(),
        functiongraph_endpoint: cfg.functiongraph_endpoint.clone(),
        smn_endpoint: cfg.smn_endpoint.clone(),
        ..Default::default()
    };
    let state = openeg_server::AppState::with_data_plane(
        stores.meta.clone(),
        secrets,
        server_cfg,
        engine.clone(),
        stores.delivery.clone(),
    );
    tokio::spawn(housekeeping(embedded, stores.clone(), retention));
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let local = listener.local_addr()?;
    if cfg.credentials.is_empty() {
        if created {
            println!("created a development credential");
        }
        if let Some(c) = creds.first() {
            print_dev_credential(
                &Config {
                    listen: local.to_string(),
                    ..cfg.clone()
                },
                c,
            );
        }
    }
    let shutdown = shutdown_signal();
    let store = if cfg.database_url.is_some() {
        "postgresql"
    } else {
        "sqlite"
    };
    // stdout: the readiness line scripts wait for, whatever the log level; the log: the record.
    println!("openeg listening on http://{local}");
    tracing::info!(
        listen = %local,
        data_dir = %cfg.data_dir.display(),
        store,
        node = %cfg.node_name,
        version = env!("CARGO_PKG_VERSION"),
        "openeg started"
    );
    openeg_server::serve(listener, state, shutdown).await?;
    engine.shutdown().await;

    tracing::info!("openeg stopped");
    // Everything acknowledged is durable by now. What is left to drop may hold Kafka
    // clients, and closing one waits on librdkafka's threads, at times for tens of seconds:
    // it is closed on the blocking pool, which `serve` does not wait for past its grace.
    tokio::task::spawn_blocking(move || drop((engine, log, stores)));
    Ok(())
}

/// `log_url = "kafka://host:port[,…]"` as the Kafka log's settings; `None`: the embedded log.
fn kafka_log_config(cfg: &Config) -> anyhow::Result<Option<openeg_log_kafka::KafkaLogConfig>> {
    let Some(url) = cfg
        .log_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
    else {
        return Ok(None);
    };
    let Some(servers) = url.strip_prefix("kafka://") else {
        anyhow::bail!(
            "log_url must be kafka://host:port[,host:port...] (or absent: the embedded log)"
        );
    };
    let servers: Vec<&str> = servers
        .trim_end_matches('/')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if servers.is_empty() || servers.iter().any(|s| !s.contains(':')) {
        anyhow::bail!("log_url must be kafka://host:port[,host:port...]");
    }
    let mut k = openeg_log_kafka::KafkaLogConfig::new(servers.join(","));
    if let Some(p) = cfg.log_partitions {
        k.partitions = u32::try_from(p)
            .ok()
            .filter(|p| (1..=openeg_engine::position::MAX_PARTITIONS).contains(p))
            .with_context(|| {
                format!(
                    "log_partitions must be 1 to {}",
                    openeg_engine::position::MAX_PARTITIONS
                )
            })?;
    }
    Ok(Some(k))
}

/// Retention: old log segments (the embedded log; a Kafka cluster applies its own topic
/// retention), traces and finished deliveries, expired tokens.
async fn housekeeping(
    log: Option<Arc<openeg_log::SegmentLog>>,
    stores: openeg_store::Stores,
    retention: std::time::Duration,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        tick.tick().await;
        if let Some(log) = &log {
            if let Err(e) = log.enforce_retention(std::time::SystemTime::now()).await {
                tracing::warn!(error = %e, "log retention failed");
            }
        }
        let now = chrono_now_ms();
        if let Err(e) = stores
            .delivery
            .purge_before(now - retention.as_millis() as i64)
            .await
        {
            tracing::warn!(error = %e, "trace retention failed");
        }
        if let Err(e) = stores.meta.purge_expired_tokens(now).await {
            tracing::warn!(error = %e, "token purge failed");
        }
    }
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Resolves on SIGINT or SIGTERM (logged: the start of the shutdown). The handlers are
/// installed by this call, not on first poll, so a signal right after the start line is
/// already a graceful shutdown.
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    async move {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        let signal = tokio::select! {
            _ = recv(&mut int) => "SIGINT",
            _ = recv(&mut term) => "SIGTERM",
        };
        tracing::info!(signal, "shutdown requested");
    }
}

#[cfg(not(unix))]
async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutdown requested");
}
