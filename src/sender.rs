//! A minimal sender: takes one contact's outbox at a time (any instance,
//! never two at once), and posts each job, in order, to
//! `POST {graph_api_base}/{phone_number_id}/messages` with the access
//! token. The outbox issue replaces it with rate limits, backoff, dead
//! letters and the 24-hour window; until then a transient failure stops
//! the contact's queue until the next try, and a permanent one drops the
//! job with a log line.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::domain::ContactKey;
use crate::flow::engine::Outgoing;
use crate::privacy::crypto::Sealer;
use crate::store::{Lane, Queue, Store, StoreError};
use crate::worker::{Job, Recipient};

/// How long a sender may hold a contact's outbox.
pub const LEASE: Duration = Duration::from_secs(60);

/// Meta error codes worth trying again (throttling and temporary errors).
pub const TRANSIENT_CODES: [i64; 9] = [1, 2, 4, 17, 80007, 130429, 131000, 131016, 131056];

/// What one call to [`Sender::try_send_next`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Idle,
    /// Sent (or dropped) this many jobs of one contact; its outbox is empty
    /// or held back by a failure.
    Sent {
        contact: ContactKey,
        sent: usize,
        dropped: usize,
    },
    /// The first pending job failed transiently; try again later.
    RetryLater {
        contact: ContactKey,
        sent: usize,
    },
}

pub struct Sender {
    pub store: Arc<dyn Store>,
    pub sealer: Sealer,
    pub client: reqwest::Client,
    pub graph_api_base: String,
    pub access_token: SecretString,
    pub max_age: Duration,
    pub owner: String,
}

/// The Graph API request body for a job (Meta's documented shapes).
pub fn graph_body(job: &Job) -> Value {
    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "biz_opaque_callback_data": job.id,
    });
    match &job.to {
        Recipient::WaId(w) => body["to"] = json!(format!("+{w}")),
        Recipient::UserId(u) => body["recipient"] = json!(u),
    }
    let (kind, content) = match &job.message {
        Outgoing::Text { body, preview_url } => {
            ("text", json!({ "body": body, "preview_url": preview_url }))
        }
        Outgoing::Buttons {
            body,
            header,
            footer,
            buttons,
        } => {
            let mut i = json!({
                "type": "button",
                "body": { "text": body },
                "action": { "buttons": buttons.iter().map(|(id, title)| json!({
                    "type": "reply", "reply": { "id": id, "title": title }
                })).collect::<Vec<_>>() },
            });
            if let Some(h) = header {
                i["header"] = json!({ "type": "text", "text": h });
            }
            if let Some(f) = footer {
                i["footer"] = json!({ "text": f });
            }
            ("interactive", i)
        }
        Outgoing::List {
            body,
            header,
            footer,
            button,
            sections,
        } => {
            let mut i = json!({
                "type": "list",
                "body": { "text": body },
                "action": {
                    "button": button,
                    "sections": sections.iter().map(|s| {
                        let mut sec = json!({ "rows": s.rows.iter().map(|(id, title, d)| {
                            let mut r = json!({ "id": id, "title": title });
                            if let Some(d) = d { r["description"] = json!(d); }
                            r
                        }).collect::<Vec<_>>() });
                        if let Some(t) = &s.title { sec["title"] = json!(t); }
                        sec
                    }).collect::<Vec<_>>(),
                },
            });
            if let Some(h) = header {
                i["header"] = json!({ "type": "text", "text": h });
            }
            if let Some(f) = footer {
                i["footer"] = json!({ "text": f });
            }
            ("interactive", i)
        }
        Outgoing::Media {
            kind,
            link,
            caption,
            filename,
        } => {
            let mut m = json!({ "link": link });
            if let Some(c) = caption {
                m["caption"] = json!(c);
            }
            if let Some(f) = filename {
                m["filename"] = json!(f);
            }
            (
                if kind == "document" {
                    "document"
                } else {
                    "image"
                },
                m,
            )
        }
        Outgoing::Template {
            name,
            language,
            params,
            ..
        } => {
            let mut t = json!({ "name": name, "language": { "code": language } });
            if !params.is_empty() {
                t["components"] = json!([{ "type": "body", "parameters": params.iter().map(|p| json!({ "type": "text", "text": p })).collect::<Vec<_>>() }]);
            }
            ("template", t)
        }
    };
    body["type"] = json!(kind);
    body[kind] = content;
    body
}

enum Attempt {
    Sent,
    Drop(String),
    Retry(String),
}

impl Sender {
    /// Sends the pending jobs of one contact, if any.
    pub async fn try_send_next(&self) -> Result<SendOutcome, StoreError> {
        for contact in self.store.ready_contacts(Lane::Outbox, 32).await? {
            let Some(claim) = self
                .store
                .claim(Lane::Outbox, &contact, &self.owner, LEASE, 20)
                .await?
            else {
                continue;
            };
            let context = Queue::Outbox(contact.clone()).name().into_bytes();
            let (mut sent, mut dropped) = (0, 0);
            let mut retry = false;
            for entry in &claim.entries {
                let job: Option<Job> = self
                    .sealer
                    .open(&entry.sealed, &context)
                    .ok()
                    .and_then(|p| serde_json::from_slice(&p).ok());
                let attempt = match job {
                    None => Attempt::Drop("job cannot be opened".into()),
                    Some(job)
                        if crate::store::now_secs() > job.created_at + self.max_age.as_secs() =>
                    {
                        Attempt::Drop("older than outbox.max_age".into())
                    }
                    Some(job) => self.post(&job).await,
                };
                match attempt {
                    Attempt::Sent => sent += 1,
                    Attempt::Drop(why) => {
                        dropped += 1;
                        tracing::warn!(contact = %contact, reason = %why, "outbound job dropped");
                    }
                    Attempt::Retry(why) => {
                        tracing::warn!(contact = %contact, reason = %why, "send failed; will retry");
                        retry = true;
                        break;
                    }
                }
                if !self.store.sent(&claim, &entry.id).await? {
                    break;
                }
            }
            self.store.release(&claim).await?;
            return Ok(if retry {
                SendOutcome::RetryLater { contact, sent }
            } else {
                SendOutcome::Sent {
                    contact,
                    sent,
                    dropped,
                }
            });
        }
        Ok(SendOutcome::Idle)
    }

    async fn post(&self, job: &Job) -> Attempt {
        let url = format!("{}/{}/messages", self.graph_api_base, job.phone_number_id);
        let resp = self
            .client
            .post(&url)
            .bearer_auth(self.access_token.expose_secret())
            .json(&graph_body(job))
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Attempt::Retry("timeout".into()),
            Err(_) => return Attempt::Retry("connection error".into()),
        };
        let status = resp.status();
        if status.is_success() {
            return Attempt::Sent;
        }
        let code = resp
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| v["error"]["code"].as_i64());
        let why = format!(
            "HTTP {} code {}",
            status.as_u16(),
            code.map_or("-".into(), |c| c.to_string())
        );
        if status.is_server_error()
            || status.as_u16() == 429
            || code.is_some_and(|c| TRANSIENT_CODES.contains(&c))
        {
            Attempt::Retry(why)
        } else {
            Attempt::Drop(why)
        }
    }

    /// Sends until the process stops; sleeps briefly when idle.
    pub async fn run(self) {
        loop {
            match self.try_send_next().await {
                Ok(SendOutcome::Idle) => tokio::time::sleep(Duration::from_millis(20)).await,
                Ok(SendOutcome::RetryLater { .. }) => {
                    tokio::time::sleep(Duration::from_secs(1)).await
                }
                Ok(SendOutcome::Sent { .. }) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "sender: store unavailable; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}
