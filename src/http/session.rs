//! The console's signed-in sessions: a random cookie id, the record kept
//! sealed in the store under a hash of it, its CSRF token, and the admin
//! credential it was opened with (a changed credential ends it). The admin
//! API accepts a live session as well as the bearer token.

use actix_web::HttpRequest;
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::operator::{Caller, Who};
use crate::state::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "whatsify_console";

/// What the store keeps of a signed-in operator's session: sealed under
/// the master key, under a hash of the cookie's id (a store dump holds no
/// usable cookie).
#[derive(Clone, serde::Serialize, Deserialize)]
pub(crate) struct Session {
    /// Unix s.
    pub(crate) expires: u64,
    pub(crate) csrf: String,
    /// The admin credential the session was opened with
    /// ([`credential_id`]): when it changes, the session is over.
    #[serde(default)]
    pub(crate) credential: String,
    /// The operator signed in (their id); `None`: the admin token's
    /// session (root).
    #[serde(default)]
    pub(crate) operator: Option<String>,
    /// The operator's account generation at sign-in: when it moves
    /// (disabled, reset), the session is over, on every instance.
    #[serde(default)]
    pub(crate) generation: u64,
    /// The flow simulator's throwaway conversation.
    #[serde(default)]
    pub(crate) sim: Option<Sim>,
}

/// A simulated customer's place in the flows: kept with the console
/// session, never with a contact, so it touches no real contact.
#[derive(Clone, serde::Serialize, Deserialize)]
pub(crate) struct Sim {
    pub(crate) session: Option<crate::domain::profile::Session>,
    pub(crate) contact: crate::domain::profile::ContactView,
    pub(crate) offered: Vec<(String, String)>,
}

/// Names an admin credential without revealing it (a keyed digest, kept
/// sealed in the session record); `""` for none.
pub fn credential_id(token: Option<&secrecy::SecretString>) -> String {
    token.map_or_else(String::new, |t| {
        hex::encode(Sha256::digest(
            format!("whatsify console credential\0{}", t.expose_secret()).as_bytes(),
        ))
    })
}

pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

/// The store's key of a session id.
pub(crate) fn store_key(id: &str) -> String {
    hex::encode(Sha256::digest(
        format!("whatsify console session {id}").as_bytes(),
    ))
}

pub(crate) fn seal_context(key: &str) -> Vec<u8> {
    format!("console-session:{key}").into_bytes()
}

/// Stores `session` under the cookie id `id`.
pub(crate) async fn save(
    state: &AppState,
    id: &str,
    session: &Session,
) -> Result<(), crate::store::StoreError> {
    let key = store_key(id);
    let plain = serde_json::to_vec(session)
        .map_err(|e| crate::store::StoreError::Corrupt(format!("console session: {e}")))?;
    let sealed = state
        .keyring
        .seal_system(&plain, &seal_context(&key))
        .map_err(|e| crate::store::StoreError::Corrupt(format!("console session: {e}")))?;
    state
        .store
        .put_console_session(&key, sealed, session.expires)
        .await
}

/// The request's live session: its cookie id and record. A record that
/// does not open (the master key changed) is no session: sign in again.
pub(crate) async fn session_of(req: &HttpRequest, state: &AppState) -> Option<(String, Session)> {
    let id = req.cookie(COOKIE)?.value().to_owned();
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let key = store_key(&id);
    let now = crate::clock::now_secs();
    let sealed = match state.store.console_session(&key, now).await {
        Ok(s) => s?,
        Err(e) => {
            tracing::error!(error = %e, "console: session not read");
            return None;
        }
    };
    let plain = state
        .keyring
        .open_system(&sealed, &seal_context(&key))
        .ok()?;
    let session: Session = serde_json::from_slice(&plain).ok()?;
    if session.expires <= now {
        return None;
    }
    // An operator's session lives as long as their account's generation;
    // the admin token's as long as that token.
    if session.operator.is_some() {
        return Some((id, session));
    }
    let current = credential_id(state.admin_token.get().as_ref());
    let live = !current.is_empty() && same(&session.credential, &current);
    live.then_some((id, session))
}

/// Who the request's live session is (with its CSRF token for a change):
/// root for the admin token's, else its operator while their account is
/// enabled and of the same generation.
pub async fn caller(req: &HttpRequest, state: &AppState) -> Option<Caller> {
    req.cookie(COOKIE)?;
    let (_, session) = session_of(req, state).await?;
    if !csrf_ok(req, &session) {
        return None;
    }
    let Some(id) = session.operator else {
        return Some(Caller::root());
    };
    let account = match crate::http::auth::accounts(state).get(&id).await {
        Ok(a) => a?,
        Err(e) => {
            tracing::error!(error = %e, "console: operator not read");
            return None;
        }
    };
    let live = !account.disabled && account.generation == session.generation;
    live.then(|| account.caller(Who::Operator(id)))
}

/// Whether the request is signed in; a request that changes something
/// must also carry the session's CSRF token.
pub async fn allows(req: &HttpRequest, state: &AppState) -> bool {
    caller(req, state).await.is_some()
}

/// A GET or HEAD needs nothing more; anything else needs the session's
/// CSRF token.
pub(crate) fn csrf_ok(req: &HttpRequest, session: &Session) -> bool {
    let method = req.method();
    if method == actix_web::http::Method::GET || method == actix_web::http::Method::HEAD {
        return true;
    }
    let given = req
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    same(given, &session.csrf)
}

/// Compares digests, so neither content nor length leaks.
pub(crate) fn same(a: &str, b: &str) -> bool {
    bool::from(Sha256::digest(a.as_bytes()).ct_eq(&Sha256::digest(b.as_bytes())))
}
