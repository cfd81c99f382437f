//! The one place errors become HTTP answers: every admin, console and
//! health handler returns [`ApiError`] (or gets one from an extractor of
//! [`crate::http::auth`]), and [`ResponseError`] turns it into the status
//! and JSON body `{"error": "..."}` the API documents.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::http::body::BodyError;
use crate::store::StoreError;

/// Why a request was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The admin API is off (no `admin.token`): 404 with no body.
    #[error("not found")]
    Off,
    /// 401 with `WWW-Authenticate: Bearer`.
    #[error("a valid admin bearer token is required")]
    Unauthorized,
    /// A console API call without a live session: 401.
    #[error("sign in first")]
    SignInFirst,
    /// Too many refused credentials from here: 429 with `Retry-After`.
    #[error("too many failed sign-ins or tokens from here; try again later")]
    Throttled(Duration),
    /// 400: the request is malformed; the message says how.
    #[error("{0}")]
    BadRequest(String),
    /// 404 with a message (nothing is kept about the contact, …).
    #[error("{0}")]
    NotFound(String),
    /// Any other refusal: its status and message.
    #[error("{1}")]
    Refused(StatusCode, String),
    /// The store failed (logged, never shown): 503.
    #[error("store unavailable")]
    Store(#[from] StoreError),
    /// The store failed under a console page: 503 with the console's words.
    #[error("the store is unavailable; try again")]
    ConsoleStore(StoreError),
    /// The body was too large, too slow or unreadable: 413, 408 or 400.
    #[error(transparent)]
    Body(#[from] BodyError),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::BadRequest(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::NotFound(message.into())
    }

    /// The console's words for a store failure.
    pub fn console(e: StoreError) -> ApiError {
        ApiError::ConsoleStore(e)
    }
}

/// A hold or disclosure the rules refuse: 422 with the rule's message
/// (it never repeats the text sent).
impl From<crate::domain::hold::Invalid> for ApiError {
    fn from(e: crate::domain::hold::Invalid) -> ApiError {
        ApiError::Refused(StatusCode::UNPROCESSABLE_ENTITY, e.0)
    }
}

/// The `Retry-After` value of a wait: whole seconds, at least one.
pub fn retry_after(wait: Duration) -> String {
    wait.as_secs_f64().ceil().max(1.0).to_string()
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Off | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized | ApiError::SignInFirst => StatusCode::UNAUTHORIZED,
            ApiError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Refused(status, _) => *status,
            ApiError::Store(_) | ApiError::ConsoleStore(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Body(e) => e.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut answer = HttpResponse::build(self.status_code());
        match self {
            ApiError::Off => return answer.finish(),
            ApiError::Body(e) => return e.error_response(),
            ApiError::Unauthorized => {
                answer.insert_header(("WWW-Authenticate", "Bearer"));
            }
            ApiError::Throttled(wait) => {
                answer.insert_header(("Retry-After", retry_after(*wait)));
            }
            ApiError::Store(e) => tracing::error!(error = %e, "admin: store unavailable"),
            ApiError::ConsoleStore(e) => tracing::error!(error = %e, "console: store unavailable"),
            _ => {}
        }
        answer.json(json!({ "error": self.to_string() }))
    }
}

/// What a handler answers.
pub type Answer = Result<HttpResponse, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_whole_seconds_and_never_zero() {
        assert_eq!(retry_after(Duration::from_millis(1)), "1");
        assert_eq!(retry_after(Duration::from_millis(4100)), "5");
    }
}
