//! Causeway's HTTP surface: the FHIR R4 API over the unified model (`/fhir`), authentication
//! (`/auth`), the management API (`/api`), the web dashboard (`/ui`), and the probes
//! (`/health`, `/ready`, `/metrics`).
//!
//! # Map
//!
//! ```text
//! request ─> router ─> Principal extractor (auth/: bearer token or session cookie; 401)
//!                 └──> handler: scope or role check (403) ─> store ─> audit record ─> response
//! ```
//!
//! # Invariants
//!
//! - Every route but `/health`, `/ready`, `/metrics` (unless `[server.metrics] token_env` is set),
//!   the login/token endpoints and the dashboard's static files (`/ui`, which hold no data)
//!   needs a principal.
//! - Every read or write of PHI appends an audit record before the response leaves.
//! - Errors are [`ApiError`]: a 4xx says why, a 5xx is logged once and says nothing more.

pub mod api;
pub mod audit;
pub mod auth;
pub mod error;
pub mod fhir;
pub mod metrics;
pub mod ui;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use causeway_engine::runtime::channel::Channel;
use causeway_store::Store;

pub use error::{ApiError, ApiResult};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub auth: Arc<auth::Auth>,
    pub audit: Arc<audit::Audit>,
    /// The public base URL of the FHIR API, e.g. `http://localhost:8080/fhir`, for links.
    pub fhir_base: Arc<str>,
    /// The engine's channels by name (write-back, management).
    pub channels: Arc<BTreeMap<String, Arc<Channel>>>,
    /// How `POST /api/config/reload` hands a checked configuration to `serve`; `None` when
    /// the process cannot reload (tests, benchmarks).
    pub reload: Option<Arc<Reload>>,
    /// The engine's live figures (`/metrics`, `/api/monitor`, `/api/stream`); `None` when no
    /// engine runs behind the server.
    pub monitor: Option<Arc<causeway_engine::monitor::Monitor>>,
    /// `[server.metrics] token_env`: the bearer token `/metrics` asks for; `None`: open.
    pub metrics_token: Option<Arc<str>>,
    /// The engine's alerts (`GET /api/alerts`); `None` when no engine runs beside the API.
    pub alerts: Option<Arc<causeway_engine::alerts::AlertBoard>>,
    /// FHIR Bulk Data export jobs (`$export`); `None`: export is not offered (404).
    pub exports: Option<Arc<fhir::export::Exports>>,
}

/// A running server's way to take a new configuration: the file it was started from, the
/// data directory that may not change under it, and the channel `serve` listens on.
#[derive(Debug)]
pub struct Reload {
    /// `None` when running the built-in configuration (nothing to reload from).
    pub path: Option<std::path::PathBuf>,
    pub data_dir: std::path::PathBuf,
    pub tx: tokio::sync::mpsc::Sender<causeway_engine::config::Config>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("fhir_base", &self.fhir_base)
            .finish_non_exhaustive()
    }
}

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    // `[server.auth] requests_per_minute` applies to the data routes; sign-in has its own.
    let limited = Router::new()
        .nest("/fhir", fhir::routes().merge(audit::fhir_routes()))
        // The base URL takes a batch Bundle with a trailing slash too (clients configured with
        // one post there); the nested router only answers `/fhir` itself.
        .route(
            "/fhir/",
            post(fhir::batch::batch).layer(axum::extract::DefaultBodyLimit::max(
                fhir::write::MAX_WRITE_BODY,
            )),
        )
        .nest(api::PREFIX, api::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::limit_requests,
        ));
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics::metrics))
        .route("/ui", get(ui::index))
        .route("/ui/", get(ui::index))
        .route("/ui/{file}", get(ui::asset))
        .nest("/auth", auth::routes())
        .merge(limited)
        .with_state(state)
}

/// Liveness: the process answers.
async fn health() -> &'static str {
    "ok\n"
}

/// Readiness: the store answers a read.
async fn ready(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> (axum::http::StatusCode, &'static str) {
    match state.store.queue_depth("").await {
        Ok(_) => (axum::http::StatusCode::OK, "ready\n"),
        Err(_) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "store unavailable\n",
        ),
    }
}
