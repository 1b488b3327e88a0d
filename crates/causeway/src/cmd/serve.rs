//! `causeway serve [--config FILE]`: the engine and the HTTP API, until SIGTERM or Ctrl-C.
//!
//! Without a configuration it runs the built-in default: data in `./causeway-data`, an MLLP
//! listener on 0.0.0.0:2575 accepting any HL7 v2 and storing everything, the API on
//! 0.0.0.0:8080. Shutdown stops accepting, lets every connection finish the message it is on
//! and every destination settle its attempt, then flushes and closes the store.
//!
//! Reload (`POST /api/config/reload`, or SIGHUP): the file is read and checked again; a valid
//! one replaces the running one the same way (everything in flight finishes; the store stays
//! open, so queues resume where they were). An invalid one is refused and logged, and the
//! running configuration stays; one that fails to start (a port taken) falls back to it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use causeway_engine::config::{Config, LogFormat};
use causeway_engine::runtime::{ApiContext, Engine};
use causeway_store::{SqliteOptions, SqliteStore, Store};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (default: the built-in configuration).
    #[arg(long, env = "CAUSEWAY_CONFIG")]
    config: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(config) = super::check::load(args.config.as_ref()) else {
        return Ok(ExitCode::from(1));
    };
    init_logging(config.server.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(config, args.config))
}

/// Structured logs to stderr; `RUST_LOG` overrides the default `info` level. Logs carry
/// control ids, types, sizes and peers, never payloads or patient fields. Colours only on a
/// terminal: a log file or journal keeps plain text that `grep` and log shippers can read.
pub fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Opens the store named by the configuration, refusing to create one: for commands that work
/// on what `serve` stored, where a new empty store (and key) would only hide a mistyped
/// `data_dir` or `--config`.
pub async fn open_existing_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let db = config
        .server
        .data_dir
        .join(causeway_store::sqlite::DB_FILE_NAME);
    if !db.is_file() {
        anyhow::bail!("no store at {}", db.display());
    }
    open_store(config).await
}

/// Opens the store named by the configuration, creating it on first use.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let options = SqliteOptions {
        max_batch: config.store.group_commit_max_messages,
        max_wait: config.store.group_commit_max_wait,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(&config.server.data_dir, options)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot open the store in {}: {e}",
                config.server.data_dir.display()
            )
        })?;
    Ok(Arc::new(store))
}

async fn serve(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    // One process-wide TLS provider, so every client and server agrees on it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = open_store(&config).await?;
    // No default password: the first start creates the administrator with a random one,
    // shown here once (on the terminal, not in the logs).
    match causeway_server::auth::ensure_admin(&*store).await {
        Ok(Some(password)) => eprintln!(
            "causeway: created the first administrator: user \"admin\", password {password}\n\
             causeway: it is shown only now; sign in and change it"
        ),
        Ok(None) => {}
        Err(e) => {
            let _ = store.close().await;
            return Err(anyhow::anyhow!("cannot set up the administrator: {e}"));
        }
    }
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<Config>(1);
    let reload = Arc::new(causeway_server::Reload {
        path: config_path.clone(),
        data_dir: config.server.data_dir.clone(),
        tx: reload_tx,
    });
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut config = config;
    // The last configuration that started, to fall back to when a reload's does not.
    let mut running: Option<Config> = None;
    loop {
        let engine = match start(&config, &store, &reload).await {
            Ok(e) => e,
            Err(e) => match running.take() {
                Some(previous) => {
                    tracing::error!(error = %e, "the reloaded configuration did not start; back to the previous one");
                    config = previous;
                    continue;
                }
                None => {
                    let _ = store.close().await;
                    return Err(e);
                }
            },
        };
        running = Some(config.clone());
        // Wait for a stop, or a new configuration (the API's, or the file again on SIGHUP).
        let next = loop {
            tokio::select! {
                _ = wait_for_signal() => break None,
                Some(new) = reload_rx.recv() => break Some(new),
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    match config_path.as_ref().map(Config::load) {
                        None => tracing::warn!("SIGHUP: running the built-in configuration, nothing to reload"),
                        Some(Err(errors)) => {
                            for e in &errors {
                                tracing::error!(problem = %e, "SIGHUP: the configuration does not validate; keeping the running one");
                            }
                        }
                        Some(Ok(new)) if new.server.data_dir != config.server.data_dir => {
                            tracing::error!("SIGHUP: server.data_dir cannot change while serving; keeping the running configuration");
                        }
                        Some(Ok(new)) => break Some(new),
                    }
                }
            }
        };
        match next {
            None => {
                tracing::info!("shutting down");
                engine.shutdown().await;
                return Ok(ExitCode::SUCCESS);
            }
            Some(new) => {
                tracing::info!(channels = new.channels.len(), "reloading the configuration");
                engine.stop().await;
                config = new;
            }
        }
    }
}

/// Starts the engine and the HTTP API for `config` on `store`, and logs the ready lines.
async fn start(
    config: &Config,
    store: &Arc<dyn Store>,
    reload: &Arc<causeway_server::Reload>,
) -> anyhow::Result<Engine> {
    let mut auth_config: causeway_server::auth::AuthConfig = (&config.server.auth).into();
    let https = config.server.http_tls.is_some();
    // Over HTTPS the session cookie is never sent in clear.
    auth_config.secure_cookies |= https;
    let auth = Arc::new(
        causeway_server::auth::Auth::new(store.clone(), auth_config)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let api_store = store.clone();
    let reload = reload.clone();
    let metrics_token = config
        .server
        .metrics_token
        .as_ref()
        .map(|t| Arc::<str>::from(t.0.as_str()));
    // Bulk Data export jobs write under the data directory; a restart forgets them.
    let exports = Some(Arc::new(
        causeway_server::fhir::export::Exports::new(
            causeway_server::fhir::export::ExportConfig::from_settings(
                &config.server.data_dir,
                &config.server.export,
            ),
        )
        .map_err(|e| anyhow::anyhow!("the export directory: {e}"))?,
    ));
    let api = move |ctx: ApiContext<'_>| {
        let state = causeway_server::AppState {
            audit: Arc::new(causeway_server::audit::Audit::new(api_store.clone())),
            store: api_store,
            auth,
            fhir_base: fhir_base(ctx.addr, https).into(),
            channels: Arc::new(ctx.channels.clone()),
            reload: Some(reload),
            monitor: Some(ctx.monitor.clone()),
            metrics_token,
            alerts: Some(ctx.alerts.clone()),
            exports,
        };
        Some(causeway_server::router(state))
    };
    let engine = Engine::start_with_api(config, store.clone(), api).await?;
    for channel in engine.channels() {
        if let Some(addr) = engine.mllp_addr(&channel.name) {
            tracing::info!(channel = %channel.name, %addr, "MLLP listening");
        }
    }
    if let Some(addr) = engine.http_addr() {
        tracing::info!(%addr, "HTTP listening");
    }
    tracing::info!(data_dir = %config.server.data_dir.display(), "causeway serving");
    Ok(engine)
}

/// The FHIR base URL links are built on: the bound address, with `localhost` for an
/// all-interfaces bind.
fn fhir_base(addr: SocketAddr, https: bool) -> String {
    let host = if addr.ip().is_unspecified() {
        "localhost".to_string()
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    let scheme = if https { "https" } else { "http" };
    format!("{scheme}://{host}:{}/fhir", addr.port())
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the engine");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
