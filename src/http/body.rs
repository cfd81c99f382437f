//! Request bodies, read only when they are wanted: after the caller is
//! authorised, under a size limit and within `server.body_timeout`.
//!
//! Handlers take `web::Payload` (which reads nothing by itself) instead of
//! `web::Bytes` or `web::Json`, whose extractors buffer the whole body before
//! the handler runs. So a caller without credentials gets its 401 without the
//! server holding a byte of what it sends, and a body that trickles in is cut
//! off with 408 instead of holding a connection and its buffer open.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use futures_util::StreamExt;

/// At most this much is set aside before the bytes arrive, whatever
/// Content-Length claims; the buffer grows as they do.
const INITIAL_CAPACITY: usize = 64 * 1024;

/// Why a body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body is larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("the body did not arrive within the time allowed")]
    Timeout,
    #[error("the body could not be read off the connection")]
    Unreadable,
}

impl ResponseError for BodyError {
    fn status_code(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Timeout => StatusCode::REQUEST_TIMEOUT,
            BodyError::Unreadable => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut answer = HttpResponse::build(self.status_code());
        if *self == BodyError::Timeout {
            // The connection is in an unknown state: do not reuse it.
            answer.force_close();
        }
        answer.json(serde_json::json!({ "error": self.to_string() }))
    }
}

/// Reads the whole body: refused at once when Content-Length says it is
/// over `max`, cut off when more than `max` bytes come, and given up after
/// `timeout`.
pub async fn read(
    req: &HttpRequest,
    payload: web::Payload,
    max: usize,
    timeout: Duration,
) -> Result<web::Bytes, BodyError> {
    tokio::time::timeout(timeout, read_limited(req, payload, max))
        .await
        .map_err(|_| BodyError::Timeout)?
}

async fn read_limited(
    req: &HttpRequest,
    mut payload: web::Payload,
    max: usize,
) -> Result<web::Bytes, BodyError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge { max });
    }
    let capacity = declared.map_or(8 * 1024, |n| (n as usize).min(INITIAL_CAPACITY));
    let mut buf = web::BytesMut::with_capacity(capacity);
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| BodyError::Unreadable)?;
        if buf.len() + chunk.len() > max {
            return Err(BodyError::TooLarge { max });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Reads an authorised request's body (at most `max` bytes, within
/// `server.body_timeout`).
pub async fn of(
    req: &HttpRequest,
    payload: web::Payload,
    state: &crate::state::AppState,
    max: usize,
) -> Result<web::Bytes, crate::http::error::ApiError> {
    Ok(read(req, payload, max, state.body_timeout).await?)
}

/// Reads an authorised request's JSON body as `T` (at most `max` bytes),
/// or 400 saying it must be `shape`, with serde's reason (which names
/// the field and the position, never the values sent).
pub async fn json<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    state: &crate::state::AppState,
    (max, shape): (usize, &str),
) -> Result<T, crate::http::error::ApiError> {
    let bytes = of(req, payload, state, max).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        crate::http::error::ApiError::bad_request(format!("the body must be {shape}: {e}"))
    })
}
