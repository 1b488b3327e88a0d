//! `causeway serve [--config FILE]`: the engine, until SIGTERM or Ctrl-C.
//!
//! Without a configuration it runs the built-in default: data in `./causeway-data`, an MLLP
//! listener on 0.0.0.0:2575 accepting any HL7 v2 and storing everything. Shutdown stops
//! accepting, lets every connection finish the message it is on and every destination
//! settle its attempt, then flushes and closes the store.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use causeway_engine::config::{Config, LogFormat};
use causeway_engine::runtime::Engine;
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
    runtime.block_on(serve(config))
}

/// Structured logs to stderr; `RUST_LOG` overrides the default `info` level. Logs carry
/// control ids, types, sizes and peers, never payloads or patient fields.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Opens the store named by the configuration.
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

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    // One process-wide TLS provider, so every client and server agrees on it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = open_store(&config).await?;
    let engine = match Engine::start(&config, store.clone()).await {
        Ok(e) => e,
        Err(e) => {
            let _ = store.close().await;
            return Err(e.into());
        }
    };
    for channel in engine.channels() {
        if let Some(addr) = engine.mllp_addr(&channel.name) {
            tracing::info!(channel = %channel.name, %addr, "MLLP listening");
        }
    }
    if let Some(addr) = engine.http_addr() {
        tracing::info!(%addr, "HTTP listening");
    }
    tracing::info!(data_dir = %config.server.data_dir.display(), "causeway serving");
    wait_for_signal().await;
    tracing::info!("shutting down");
    engine.shutdown().await;
    Ok(ExitCode::SUCCESS)
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
