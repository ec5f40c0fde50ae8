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
        /// TOML configuration file; every key can also be set as OPENEG_<KEY>.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the access key, project id and endpoint of the configured credentials.
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Serve { config } => serve(config),
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
    let (creds, _) = effective_credentials(&cfg)?;
    let dev = cfg.credentials.is_empty();
    for c in &creds {
        if dev {
            print_dev_credential(&cfg, c);
        } else {
            println!(
                "access key: {}  project id: {}  endpoint: {}",
                c.access_key,
                c.project_id,
                endpoint(&cfg.listen)
            );
        }
        if show_secret && dev {
            println!("  secret:      {}", c.secret_key);
        }
    }
    Ok(())
}

fn serve(path: Option<PathBuf>) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OPENEG_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cfg = Config::load(path.as_deref())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(run_server(cfg))
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
    let retention = std::time::Duration::from_secs(cfg.retention_hours.max(1) * 3600);
    let mut log_cfg = openeg_log::LogConfig::default();
    log_cfg.retention_max_age = Some(retention);
    log_cfg.retention_max_bytes = cfg.log_max_bytes_per_channel;
    // Test-only fault-injection mock: while <dir>/log-sync exists, every fsync of appended
    // events fails.
    if let Some(dir) = std::env::var_os("OPENEG_FAULT_INJECTION_DIR") {
        let switch = std::path::Path::new(&dir).join("log-sync");
        tracing::warn!(switch = %switch.display(), "FAULT INJECTION ENABLED (tests only): log syncs fail while this file exists");
        log_cfg.fault_injection = Some(openeg_log::FaultInjection::syncs_fail_while_exists(switch));
    }
    let log = Arc::new(
        openeg_log::SegmentLog::open(cfg.data_dir.join("log"), log_cfg)
            .await
            .context("opening the event log")?,
    );
    let engine_cfg = openeg_engine::EngineConfig {
        functiongraph_endpoint: cfg.functiongraph_endpoint.clone(),
        smn_endpoint: cfg.smn_endpoint.clone(),
        ..Default::default()
    };
    let topics = log.topics();
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
    tokio::spawn(housekeeping(log.clone(), stores.clone(), retention));
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
    let backend = if cfg.database_url.is_some() {
        "postgresql"
    } else {
        "sqlite"
    };
    println!(
        "openeg listening on http://{local} (metadata: {backend}, data dir: {})",
        cfg.data_dir.display()
    );
    tracing::info!(%local, backend, "listening");
    openeg_server::serve(listener, state, shutdown_signal()).await?;
    engine.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Retention: old log segments, traces and finished deliveries, expired tokens.
async fn housekeeping(
    log: Arc<openeg_log::SegmentLog>,
    stores: openeg_store::Stores,
    retention: std::time::Duration,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        tick.tick().await;
        if let Err(e) = log.enforce_retention(std::time::SystemTime::now()).await {
            tracing::warn!(error = %e, "log retention failed");
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

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
