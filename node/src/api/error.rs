//! The one error body of the HTTP API: `{code, message, details}` with the
//! right status.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pulseplane_core::{CommandError, ValidationError};
use serde::Serialize;

use crate::write::WriteError;

/// One problem with the input, located by JSON pointer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Detail {
    pub path: String,
    pub problem: String,
}

/// An API error.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<Detail>,
    /// Seconds, for 503s.
    pub retry_after: Option<u32>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
    details: &'a [Detail],
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 401: who are you? (A missing, malformed, expired or forged
    /// credential.)
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: known, but not allowed.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }

    /// A problem with one field of the input.
    pub fn field(path: &str, problem: impl Into<String>) -> ApiError {
        let problem = problem.into();
        ApiError {
            details: vec![Detail {
                path: path.into(),
                problem: problem.clone(),
            }],
            ..ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("{path}: {problem}"),
            )
        }
    }

    /// Input that parsed but is not valid.
    pub fn invalid(e: ValidationError) -> ApiError {
        let details: Vec<Detail> = e
            .issues
            .iter()
            .map(|i| Detail {
                path: i.path.clone(),
                problem: i.message.clone(),
            })
            .collect();
        let message = match details.as_slice() {
            [one] => format!("{}: {}", one.path, one.problem),
            many => format!(
                "{} problems, the first at {}: {}",
                many.len(),
                many[0].path,
                many[0].problem
            ),
        };
        ApiError {
            details,
            ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> ApiError {
        let status = match &e {
            CommandError::EnvironmentNotFound { .. }
            | CommandError::FlagNotFound { .. }
            | CommandError::SegmentNotFound { .. }
            | CommandError::VersionNotFound { .. }
            | CommandError::RoleNotFound { .. }
            | CommandError::BindingNotFound { .. }
            | CommandError::SdkKeyNotFound { .. } => StatusCode::NOT_FOUND,
            CommandError::EnvironmentExists { .. }
            | CommandError::EnvironmentNotEmpty { .. }
            | CommandError::InUse { .. }
            | CommandError::NoChange { .. }
            | CommandError::IdempotencyKeyReused { .. } => StatusCode::CONFLICT,
            CommandError::RevisionConflict { .. } => StatusCode::PRECONDITION_FAILED,
            CommandError::Invalid(v) => return ApiError::invalid(v.clone()),
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> ApiError {
        let code = match e {
            WriteError::NoLeader | WriteError::NotLeader { .. } => "no_leader",
            WriteError::Timeout => "write_timeout",
            WriteError::ShuttingDown => "shutting_down",
        };
        ApiError::unavailable(code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            code: self.code,
            message: &self.message,
            details: &self.details,
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// The error body, as documented (the same shape as [`ApiError`]'s).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable code, e.g. `flag_not_found`.
    pub code: String,
    pub message: String,
    pub details: Vec<Detail>,
}
