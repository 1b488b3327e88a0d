//! `POST /api/config/reload`: the configuration file is read and checked again, exactly as
//! `causeway check` does; a valid one replaces the running one (channels stop after their
//! current message and start again from the new file), an invalid one is refused with every
//! problem and the running configuration stays.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::{ErrorBody, api};
use crate::AppState;
use crate::audit::AuditAction;
use crate::auth::{PeerAddr, Principal, Role};
use crate::error::{ApiError, IssueCode};

/// A reload that will happen.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReloadAccepted {
    /// Always `reloading`: the answer goes out before the channels restart.
    pub status: String,
    /// The file read.
    pub file: String,
    /// Channels in the new configuration.
    pub channels: usize,
}

/// A configuration that does not validate.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReloadRefused {
    pub error: String,
    pub code: String,
    /// Every problem, as `causeway check` prints it (`file:line:column: key: what`).
    pub problems: Vec<String>,
}

/// Reload the configuration.
///
/// Reads the configuration file the server was started with, validates it (every problem is
/// reported at once), and when it is valid restarts the channels with it: listeners and
/// destination workers finish their current message first, nothing stored is lost, queues
/// resume. The data directory cannot change this way.
#[utoipa::path(
    post,
    path = "/api/config/reload",
    tag = "channels",
    responses(
        (status = 202, description = "Valid: the channels restart with it", body = ReloadAccepted),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a user with the admin role", body = ErrorBody),
        (status = 409, description = "Nothing to reload from, or a reload is in progress", body = ErrorBody),
        (status = 422, description = "The file does not validate; the running configuration stays", body = ReloadRefused),
    ),
)]
pub(super) async fn reload(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
) -> Result<Response, ApiError> {
    api(async {
        who.require_role(Role::Admin)?;
        let reload = state
            .reload
            .as_ref()
            .ok_or_else(|| ApiError::conflict("this server cannot reload its configuration"))?;
        let path = reload.path.as_ref().ok_or_else(|| {
            ApiError::conflict("running the built-in configuration: there is no file to reload")
        })?;
        let config = match causeway_engine::config::Config::load(path) {
            Ok(c) => c,
            Err(errors) => {
                let problems: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                return Ok(refused(
                    format!("{}: {} problem(s)", path.display(), problems.len()),
                    problems,
                ));
            }
        };
        if config.server.data_dir != reload.data_dir {
            return Ok(refused(
                "server.data_dir cannot change while serving: restart to move the store".into(),
                Vec::new(),
            ));
        }
        let channels = config.channels.len();
        super::audit(
            &state,
            &who,
            AuditAction::Operation,
            "Config/$reload".into(),
            None,
            StatusCode::ACCEPTED,
            peer.text(),
        )
        .await?;
        reload
            .tx
            .try_send(config)
            .map_err(|_| ApiError::conflict("a reload is already in progress"))?;
        tracing::info!(user = %who.subject, channels, "configuration reload requested");
        Ok((
            StatusCode::ACCEPTED,
            Json(ReloadAccepted {
                status: "reloading".into(),
                file: path.display().to_string(),
                channels,
            }),
        )
            .into_response())
    })
    .await
}

fn refused(error: String, problems: Vec<String>) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(ReloadRefused {
            error,
            code: IssueCode::Invalid.as_str().into(),
            problems,
        }),
    )
        .into_response()
}
