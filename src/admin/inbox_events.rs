//! `GET /admin/businesses/{b}/inbox/events`: the agents' inbox as
//! server-sent events (`text/event-stream`). An `inbox` event carries the
//! list without personal data (contact keys, times, who has each) at
//! connect and whenever it changes on any instance: the store is read
//! about once a second and a digest of the list compared. The page then
//! fetches the full list. A comment keeps the connection alive every
//! 15 seconds; the stream ends when the server shuts down, and when the
//! caller may no longer see it (checked again at each read: a session
//! ended, an operator disabled, a token revoked).

use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, http::header, web};
use sha2::{Digest, Sha256};

use super::inbox::{Emails, light, waiting};
use crate::domain::BusinessId;
use crate::http::auth::{Operator, business_of};
use crate::http::error::Answer;
use crate::state::AppState;

/// How often the store is read for changes.
const POLL: Duration = Duration::from_secs(1);
/// How often a quiet stream sends a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One client's stream.
struct Feed {
    /// The request, to authorise the caller again.
    req: HttpRequest,
    state: web::Data<AppState>,
    business: BusinessId,
    /// The digest of the list last sent (`None`: nothing sent yet).
    sent: Option<Vec<u8>>,
    /// When something was last written to the client.
    wrote: Instant,
}

impl Feed {
    /// The list as the stream shows it, as JSON.
    async fn list(&self) -> Result<String, crate::store::StoreError> {
        let mut emails = Emails::default();
        let mut out = Vec::new();
        for (contact, w, _) in waiting(&self.state, &self.business).await? {
            out.push(light(&self.state, (&contact, &w), &mut emails).await);
        }
        let body = serde_json::json!({ "business": self.business.as_str(), "conversations": out });
        Ok(body.to_string())
    }

    /// The next chunk to send: the list when it changed, a keep-alive
    /// comment when quiet for long; `None` once the server shuts down.
    async fn next(&mut self) -> Option<Bytes> {
        let shutdown = self.state.shutdown.clone();
        loop {
            if shutdown.is_stopping() {
                return None;
            }
            if self.sent.is_some() {
                shutdown.sleep(POLL).await;
                if shutdown.is_stopping() {
                    return None;
                }
                if let Err(e) = crate::http::auth::authorize(&self.req, &self.state).await {
                    tracing::info!(error = %e, "inbox events: the caller may no longer see it");
                    return None;
                }
            }
            match self.list().await {
                Ok(json) => {
                    let digest = Sha256::digest(json.as_bytes()).to_vec();
                    if self.sent.as_ref() != Some(&digest) {
                        let retry = if self.sent.is_none() {
                            "retry: 2000\n"
                        } else {
                            ""
                        };
                        self.sent = Some(digest);
                        self.wrote = Instant::now();
                        return Some(Bytes::from(format!(
                            "{retry}event: inbox\ndata: {json}\n\n"
                        )));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "inbox events: the store did not answer"),
            }
            if self.wrote.elapsed() >= KEEP_ALIVE {
                self.wrote = Instant::now();
                return Some(Bytes::from_static(b": keep-alive\n\n"));
            }
        }
    }
}

/// `GET …/inbox/events`: the live list (see the module's doc).
pub async fn events(_: Operator, req: HttpRequest, state: web::Data<AppState>) -> Answer {
    let business = business_of(&req, &state)?;
    let feed = Feed {
        req,
        state,
        business,
        sent: None,
        wrote: Instant::now(),
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        let chunk = feed.next().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), feed))
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}
