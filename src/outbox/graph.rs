//! The Graph API client: one pooled HTTP client (reqwest with rustls, 30 s
//! timeout) posting to `{graph_api_base}/{phone_number_id}/messages` with
//! the access token, and the classification of Meta's answers.
//!
//! The client follows no redirect: the access token goes to the configured
//! base only (which must be https, see [`crate::config::transport`]). A 3xx
//! answer is a failure like a 5xx: retried with backoff, then dead-lettered
//! with its status; its `Location` is never requested.
//!
//! Errors are classified on `error.code` (Meta says to build on the code,
//! not on titles), then on the HTTP status. The reason kept for a failure
//! holds the status and the code only: Meta's `message` and `details` can
//! quote the recipient, so they are never stored or logged.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::graph_body;
use crate::domain::outbound::Job;

/// How long one request may take.
pub const TIMEOUT: Duration = crate::config::GRAPH_TIMEOUT_MAX;

/// Transient error codes: try again later (with backoff).
pub const TRANSIENT_CODES: [i64; 5] = [1, 2, 17, 131000, 131016];
/// Throughput limits of the number, the app or the account: slow the
/// whole number down, then retry.
pub const THROTTLE_CODES: [i64; 3] = [4, 80007, 130429];
/// The pair rate limit (business, customer): back off 4^n seconds.
pub const PAIR_LIMIT_CODE: i64 = 131056;
/// The user stopped marketing messages from this business.
pub const MARKETING_STOPPED_CODE: i64 = 131050;

/// The access tokens: each business's for its numbers, and
/// `meta.access_token` for any other. Replaceable while running (SIGHUP
/// re-reads them).
#[derive(Clone)]
pub struct SharedToken(Arc<RwLock<Tokens>>);

/// The tokens in force.
#[derive(Clone)]
pub struct Tokens {
    /// `meta.access_token`: numbers no business lists (the `default`
    /// business of a deployment without `[[businesses]]`).
    pub default: SecretString,
    /// Each listed number's business's token.
    pub by_number: std::collections::HashMap<String, SecretString>,
}

impl Tokens {
    /// The tokens the settings give.
    pub fn of(settings: &crate::config::Settings) -> Tokens {
        let by_number = settings
            .businesses
            .iter()
            .flat_map(|b| {
                b.phone_number_ids
                    .iter()
                    .map(|n| (n.clone(), b.access_token.clone()))
            })
            .collect();
        Tokens {
            default: settings.meta.access_token.clone(),
            by_number,
        }
    }

    fn same(&self, other: &Tokens) -> bool {
        self.default.expose_secret() == other.default.expose_secret()
            && self.by_number.len() == other.by_number.len()
            && self.by_number.iter().all(|(n, t)| {
                other
                    .by_number
                    .get(n)
                    .is_some_and(|o| o.expose_secret() == t.expose_secret())
            })
    }
}

impl SharedToken {
    pub fn new(tokens: Tokens) -> Self {
        SharedToken(Arc::new(RwLock::new(tokens)))
    }

    /// The token that sends from `phone_number_id`.
    pub fn for_number(&self, phone_number_id: &str) -> SecretString {
        let t = self.0.read().unwrap_or_else(|p| p.into_inner());
        t.by_number
            .get(phone_number_id)
            .unwrap_or(&t.default)
            .clone()
    }

    /// Replaces the tokens; true when any changed.
    pub fn set(&self, tokens: Tokens) -> bool {
        let mut t = self.0.write().unwrap_or_else(|p| p.into_inner());
        let changed = !t.same(&tokens);
        *t = tokens;
        changed
    }
}

/// What to do about a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Try again after a backoff (5xx, timeouts, connection errors,
    /// transient codes).
    Transient,
    /// A throughput limit: slow the number down, then retry.
    Throttled,
    /// The pair rate limit: retry after 4^n seconds.
    PairLimit,
    /// The token or the permissions: pause the number (breaker).
    Credentials,
    /// Will fail again: record it and move on.
    Permanent,
}

/// A failed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub class: Class,
    pub http: Option<u16>,
    pub code: Option<i64>,
    /// Status and code in words; never Meta's message text.
    pub reason: String,
}

/// Meta's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Accepted (not yet delivered), with the message's wamid.
    Accepted {
        wamid: Option<String>,
    },
    Failed(Failure),
}

/// Classifies an error answer by Meta's code, then by HTTP status.
pub fn classify(http: u16, code: Option<i64>) -> Class {
    if (300..400).contains(&http) {
        // A redirect is not followed (the token would go with it): most
        // likely a proxy or a moved base; retried, then recorded.
        return Class::Transient;
    }
    match code {
        Some(c) if TRANSIENT_CODES.contains(&c) => Class::Transient,
        Some(c) if THROTTLE_CODES.contains(&c) => Class::Throttled,
        Some(PAIR_LIMIT_CODE) => Class::PairLimit,
        // Token expired or invalid; authorization and permission errors.
        Some(0 | 3 | 10 | 190) => Class::Credentials,
        Some(c) if (200..=299).contains(&c) => Class::Credentials,
        Some(_) if http >= 500 => Class::Transient,
        Some(_) => Class::Permanent,
        None if http >= 500 || http == 429 || http == 408 => Class::Transient,
        None if http == 401 => Class::Credentials,
        None => Class::Permanent,
    }
}

/// A failed answer in words: its status and Meta's code (never Meta's
/// message, never a redirect's target).
fn reason(status: u16, code: Option<i64>) -> String {
    let redirect = if (300..400).contains(&status) {
        " (redirect not followed)"
    } else {
        ""
    };
    match code {
        Some(c) => format!("HTTP {status}{redirect}, Meta error {c}"),
        None => format!("HTTP {status}{redirect}"),
    }
}

/// A request that got no answer (timeout, connection error): transient.
fn transport(e: &reqwest::Error) -> Failure {
    Failure {
        class: Class::Transient,
        http: None,
        code: None,
        reason: if e.is_timeout() {
            "timeout".into()
        } else {
            "connection error".into()
        },
    }
}

/// The Graph API client.
#[derive(Clone)]
pub struct Graph {
    client: reqwest::Client,
    base: String,
    token: SharedToken,
}

impl Graph {
    pub fn new(client: reqwest::Client, base: &str, token: SharedToken) -> Self {
        Graph {
            client,
            base: base.trim_end_matches('/').to_owned(),
            token,
        }
    }

    /// Builds the pooled client every sender shares; a request that takes
    /// longer than `timeout` (at most [`TIMEOUT`]) fails as unanswered.
    pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
        reqwest::Client::builder()
            .timeout(timeout.min(TIMEOUT))
            .pool_idle_timeout(Duration::from_secs(90))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())
    }

    /// Uploads a file for sending (`POST {base}/{phone_number_id}/media`,
    /// multipart: `messaging_product=whatsapp`, `type`, `file`); the
    /// media id Meta answers, or why not.
    pub async fn upload(
        &self,
        phone_number_id: &str,
        bytes: Vec<u8>,
        mime: &str,
        filename: &str,
    ) -> Result<String, Failure> {
        let url = format!("{}/{}/media", self.base, phone_number_id);
        let token = self.token.for_number(phone_number_id);
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(filename.to_owned())
            .mime_str(mime)
            .map_err(|_| Failure {
                class: Class::Permanent,
                http: None,
                code: None,
                reason: "invalid media type".into(),
            })?;
        let form = reqwest::multipart::Form::new()
            .text("messaging_product", "whatsapp")
            .text("type", mime.to_owned())
            .part("file", part);
        let resp = self
            .client
            .post(&url)
            .bearer_auth(token.expose_secret())
            .multipart(form)
            .send()
            .await;
        let resp = resp.map_err(|e| transport(&e))?;
        let status = resp.status().as_u16();
        let body: Option<Value> = resp.json().await.ok();
        if (200..300).contains(&status)
            && let Some(id) = body.as_ref().and_then(|b| b["id"].as_str())
        {
            return Ok(id.to_owned());
        }
        let code = body.as_ref().and_then(|b| b["error"]["code"].as_i64());
        Err(Failure {
            class: classify(status, code),
            http: Some(status),
            code,
            reason: format!("media upload: {}", reason(status, code)),
        })
    }

    /// Posts one job.
    pub async fn send(&self, job: &Job) -> Answer {
        let url = format!("{}/{}/messages", self.base, job.phone_number_id);
        let token = self.token.for_number(&job.phone_number_id);
        let resp = self
            .client
            .post(&url)
            .bearer_auth(token.expose_secret())
            .json(&graph_body(job))
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return Answer::Failed(transport(&e)),
        };
        let status = resp.status().as_u16();
        let body: Option<Value> = resp.json().await.ok();
        if (200..300).contains(&status) {
            let wamid = body
                .as_ref()
                .and_then(|b| b["messages"][0]["id"].as_str())
                .map(str::to_owned);
            return Answer::Accepted { wamid };
        }
        let code = body.as_ref().and_then(|b| b["error"]["code"].as_i64());
        Answer::Failed(Failure {
            class: classify(status, code),
            http: Some(status),
            code,
            reason: reason(status, code),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_s_error_classes() {
        for c in [1, 2, 17, 131000, 131016] {
            assert_eq!(classify(400, Some(c)), Class::Transient, "{c}");
        }
        for c in [4, 80007, 130429] {
            assert_eq!(classify(400, Some(c)), Class::Throttled, "{c}");
        }
        assert_eq!(classify(400, Some(131056)), Class::PairLimit);
        assert_eq!(classify(401, Some(190)), Class::Credentials);
        assert_eq!(classify(403, Some(10)), Class::Credentials);
        assert_eq!(classify(403, Some(200)), Class::Credentials);
        for c in [131026, 131047, 131051, 100, 368, 131050] {
            assert_eq!(classify(400, Some(c)), Class::Permanent, "{c}");
        }
        assert_eq!(classify(503, None), Class::Transient);
        assert_eq!(classify(500, Some(131999)), Class::Transient);
        assert_eq!(classify(429, None), Class::Transient);
        assert_eq!(classify(404, None), Class::Permanent);
        assert_eq!(classify(302, None), Class::Transient);
        assert_eq!(classify(307, Some(100)), Class::Transient);
        assert_eq!(reason(302, None), "HTTP 302 (redirect not followed)");
    }
}
