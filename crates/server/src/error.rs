//! The one HTTP error type.
//!
//! A 4xx echoes its reason; on `/fhir` routes the body is a FHIR OperationOutcome, elsewhere a
//! small JSON object. A 5xx is logged once here and says nothing more to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Which API answered, deciding the error body's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Fhir,
    Api,
}

/// The FHIR issue type of an error (value set `issue-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueCode {
    Invalid,
    Required,
    Value,
    NotFound,
    Deleted,
    Conflict,
    Security,
    Login,
    Forbidden,
    NotSupported,
    TooCostly,
    Throttled,
    Exception,
    Timeout,
    BusinessRule,
    Processing,
    Transient,
    Informational,
}

impl IssueCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::Required => "required",
            Self::Value => "value",
            Self::NotFound => "not-found",
            Self::Deleted => "deleted",
            Self::Conflict => "conflict",
            Self::Security => "security",
            Self::Login => "login",
            Self::Forbidden => "forbidden",
            Self::NotSupported => "not-supported",
            Self::TooCostly => "too-costly",
            Self::Throttled => "throttled",
            Self::Exception => "exception",
            Self::Timeout => "timeout",
            Self::BusinessRule => "business-rule",
            Self::Processing => "processing",
            Self::Transient => "transient",
            Self::Informational => "informational",
        }
    }
}

/// An error answered over HTTP.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: IssueCode,
    /// Shown to the client for 4xx; logged (never shown) for 5xx. Never holds PHI.
    pub message: String,
    pub surface: Surface,
    /// `WWW-Authenticate` for a 401.
    pub challenge: Option<&'static str>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: IssueCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            surface: Surface::Fhir,
            challenge: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, IssueCode::Invalid, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, IssueCode::NotFound, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, IssueCode::Login, message);
        e.challenge = Some("Bearer");
        e
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, IssueCode::Forbidden, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, IssueCode::Conflict, message)
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            IssueCode::Processing,
            message,
        )
    }

    /// A server-side failure: the detail goes to the log, the client sees a fixed text.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            IssueCode::Exception,
            detail.to_string(),
        )
    }

    pub fn on(mut self, surface: Surface) -> Self {
        self.surface = surface;
        self
    }
}

impl From<causeway_store::Error> for ApiError {
    fn from(e: causeway_store::Error) -> Self {
        use causeway_store::ErrorKind;
        match e.kind() {
            ErrorKind::Closed => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                IssueCode::Exception,
                "the store is shutting down",
            ),
            _ => Self::internal(e),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for ApiError {}

/// A FHIR OperationOutcome with one issue.
pub fn operation_outcome(severity: &str, code: IssueCode, diagnostics: &str) -> serde_json::Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": severity, "code": code.as_str(), "diagnostics": diagnostics }]
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let shown = if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), error = %self.message, "request failed");
            "internal error; see the server log".to_string()
        } else {
            self.message
        };
        let mut response = match self.surface {
            Surface::Fhir => {
                let body = operation_outcome("error", self.code, &shown);
                let mut r = (self.status, body.to_string()).into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(crate::fhir::FHIR_JSON),
                );
                r
            }
            Surface::Api => (
                self.status,
                axum::Json(json!({ "error": shown, "code": self.code.as_str() })),
            )
                .into_response(),
        };
        if let Some(challenge) = self.challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}
