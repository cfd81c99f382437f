//! HTTP ingress for Meta's webhook.
//!
//! `GET /webhook` answers Meta's verification handshake. `POST /webhook`
//! reads the raw body under a size limit, verifies `X-Hub-Signature-256`
//! over those bytes, parses the payload ([`payload`]), splits it into
//! events ([`events`]), seals them and appends them to the durable inbox.
//! Only then does it answer 200. It never calls the Graph API.
//!
//! Answers: 200 stored (or already stored); 401 bad signature; 413 too
//! large; 408 a body slower than `server.body_timeout`; 400 a body that
//! could not be read off the connection; 503 the
//! store could not be written, so Meta retries. A signed body that we
//! cannot parse is quarantined (sealed, in the store) and answered 200:
//! Meta would retry the same bytes for 7 days to no purpose, and a 4xx
//! would count against the endpoint, while the quarantine keeps the body
//! for an operator. Nothing acknowledged is lost.

pub mod events;
pub mod links;

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::http::header::ContentType;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::crypto::signature::SignatureError;
use crate::domain::inbound::InboxEvent;
use crate::state::AppState;
use crate::store::{Appended, EntryKey, InboxEntry, Queue, StoreError};

/// Why a delivery was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("body larger than server.max_body_bytes")]
    TooLarge,
    #[error("body not received within server.body_timeout")]
    Timeout,
    #[error("invalid signature: {0}")]
    Signature(#[from] SignatureError),
    #[error("could not read the request body")]
    BadBody,
    #[error("could not store the delivery: {0}")]
    Store(#[from] StoreError),
    #[error("could not seal the delivery")]
    Seal,
    #[error("shutting down")]
    ShuttingDown,
    #[error("no business has the id in the path")]
    NoSuchBusiness,
}

impl ResponseError for WebhookError {
    fn status_code(&self) -> StatusCode {
        match self {
            WebhookError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            WebhookError::Timeout => StatusCode::REQUEST_TIMEOUT,
            WebhookError::Signature(_) => StatusCode::UNAUTHORIZED,
            WebhookError::BadBody => StatusCode::BAD_REQUEST,
            WebhookError::NoSuchBusiness => StatusCode::NOT_FOUND,
            WebhookError::Store(_) | WebhookError::Seal | WebhookError::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            WebhookError::TooLarge => "payload too large",
            WebhookError::Timeout => "body not received in time",
            WebhookError::Signature(_) => "invalid signature",
            WebhookError::BadBody => "could not read body",
            WebhookError::Store(_) | WebhookError::Seal => "temporarily unavailable, retry later",
            WebhookError::ShuttingDown => "shutting down, retry later",
            WebhookError::NoSuchBusiness => "no such business",
        };
        let mut resp = HttpResponse::build(self.status_code());
        if self.status_code() == StatusCode::SERVICE_UNAVAILABLE {
            resp.insert_header(("Retry-After", "5"));
        }
        resp.content_type(ContentType::plaintext()).body(message)
    }
}

/// `GET /webhook` and `GET /webhook/{business}`: Meta's verification
/// handshake (404 for a business that does not exist).
pub async fn verify(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let forbidden = || {
        HttpResponse::Forbidden()
            .content_type(ContentType::plaintext())
            .body("forbidden")
    };
    if let Some(id) = req.match_info().get("business")
        && state.businesses.get(id).is_none()
    {
        return HttpResponse::NotFound()
            .content_type(ContentType::plaintext())
            .body("no such business");
    }
    let Ok(q) = web::Query::<HashMap<String, String>>::from_query(req.query_string()) else {
        return forbidden();
    };
    let mode_ok = q.get("hub.mode").map(String::as_str) == Some("subscribe");
    // Compare digests, so neither the content nor the length of the token
    // shows in the timing.
    let token_ok = q.get("hub.verify_token").is_some_and(|t| {
        let given = Sha256::digest(t.as_bytes());
        let ours = Sha256::digest(state.verify_token.get().expose_secret().as_bytes());
        bool::from(given.as_slice().ct_eq(ours.as_slice()))
    });
    match q.get("hub.challenge") {
        Some(challenge) if mode_ok && token_ok => {
            tracing::info!(outcome = "verified", "webhook handshake");
            HttpResponse::Ok()
                .content_type(ContentType::plaintext())
                .body(challenge.clone())
        }
        _ => {
            tracing::warn!(outcome = "refused", "webhook handshake");
            forbidden()
        }
    }
}

/// `POST /webhook`: a delivery from Meta; `POST /webhook/{business}`: one
/// for a business on its own Meta app, signed with its `app_secret` and
/// routed to its own numbers only.
pub async fn receive(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebhookError> {
    // Meta retries a refused delivery; another instance (or this one,
    // restarted) takes it.
    let started = std::time::Instant::now();
    let m = crate::metrics::global();
    if state.shutdown.is_stopping() {
        tracing::info!(outcome = "shutting_down", "webhook refused");
        m.webhook_requests
            .with_label_values(&["shutting_down"])
            .inc();
        return Err(WebhookError::ShuttingDown);
    }
    let result = handle(&req, payload, &state).await;
    let label = match &result {
        Ok((_, label)) => *label,
        Err(e @ WebhookError::Store(_)) => {
            tracing::error!(outcome = "store_unavailable", error = %e, "webhook refused");
            outcome(e)
        }
        Err(e) => {
            tracing::warn!(outcome = %outcome(e), "webhook refused");
            outcome(e)
        }
    };
    m.webhook_requests.with_label_values(&[label]).inc();
    m.webhook_ack_seconds
        .observe(started.elapsed().as_secs_f64());
    result.map(|(response, _)| response)
}

fn outcome(e: &WebhookError) -> &'static str {
    match e {
        WebhookError::TooLarge => "too_large",
        WebhookError::Timeout => "body_timeout",
        WebhookError::Signature(SignatureError::Missing) => "signature_missing",
        WebhookError::Signature(SignatureError::Malformed) => "signature_malformed",
        WebhookError::Signature(SignatureError::Mismatch) => "signature_mismatch",
        WebhookError::BadBody => "bad_body",
        WebhookError::Store(_) => "store_unavailable",
        WebhookError::Seal => "seal_failed",
        WebhookError::ShuttingDown => "shutting_down",
        WebhookError::NoSuchBusiness => "no_such_business",
    }
}

/// Handles a delivery: the answer, and its outcome for the metrics (`ok`
/// or `quarantined`).
async fn handle(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<(HttpResponse, &'static str), WebhookError> {
    let body = crate::http::body::read(req, payload, state.max_body_bytes, state.body_timeout)
        .await
        .map_err(|e| match e {
            crate::http::body::BodyError::TooLarge { .. } => WebhookError::TooLarge,
            crate::http::body::BodyError::Timeout => WebhookError::Timeout,
            crate::http::body::BodyError::Unreadable => WebhookError::BadBody,
        })?;
    let header = req
        .headers()
        .get("x-hub-signature-256")
        .map(|v| v.as_bytes());
    let own = match req.match_info().get("business") {
        None => None,
        Some(id) => Some(
            state
                .businesses
                .get(id)
                .ok_or(WebhookError::NoSuchBusiness)?,
        ),
    };
    match own.and_then(|b| b.app_secret.clone()) {
        Some(secret) => {
            crate::crypto::signature::SignatureVerifier::new(secret, None).verify(header, &body)?
        }
        None => state.verifier.get().verify(header, &body)?,
    }
    // At a business's own webhook, only its numbers are routed: a change
    // for another business's number is kept as an unknown number.
    let directory = match own {
        Some(b) => std::borrow::Cow::Owned(state.businesses.only_for(&b.id)),
        None => std::borrow::Cow::Borrowed(state.businesses.as_ref()),
    };
    let received_at = crate::clock::now_secs();

    let parsed = crate::domain::payload::parse(&body);
    let notification = match parsed {
        Ok(n) if n.object == "whatsapp_business_account" => n,
        other => {
            return quarantine(state, &body, other.err())
                .await
                .map(|r| (r, "quarantined"));
        }
    };
    let removed = state.removed.snapshot();
    let mut routed = events::split(
        notification,
        &state.pseudonymizer,
        &directory,
        &removed,
        received_at,
    );
    // One contact per customer, whichever of their ids Meta gave.
    let cache = (state.contact_links.as_ref(), &state.keyring);
    let links = links::route(state.store.as_ref(), cache, &mut routed).await?;
    let (entries, plains) = seal_routed(state, &mut routed)?;
    let consents: Vec<Option<crate::domain::consent::ConsentChange>> =
        entries.iter().map(|e| e.consent.clone()).collect();
    let audited: Vec<Option<crate::domain::audit::AuditEvent>> = entries
        .iter()
        .map(|e| match (&e.queue, &e.consent) {
            (Queue::Contact(k), Some(c)) => Some(crate::privacy::audit::of_consent(k.as_str(), c)),
            _ => None,
        })
        .collect();
    enlist(state, &routed, &entries).await?;
    let results = append_sealed(state, entries, &plains, &links).await?;
    let new = recorded(state, &routed, &consents, audited, &results).await;
    if results.contains(&Appended::KeyMismatch) {
        return Err(WebhookError::Store(StoreError::Unavailable(
            "a contact's data key kept changing".into(),
        )));
    }
    state.last_webhook.store(
        crate::clock::now_secs(),
        std::sync::atomic::Ordering::Relaxed,
    );
    tracing::info!(
        outcome = "ok",
        events = results.len(),
        new,
        duplicates = results.len() - new,
        "webhook accepted"
    );
    Ok((
        HttpResponse::Ok()
            .content_type(ContentType::plaintext())
            .body("EVENT_RECEIVED"),
        "ok",
    ))
}

/// Records the business of each contact this instance meets for the first
/// time (its data key is made here): before its first entry is stored, so
/// no contact is on record without its business.
async fn enlist(
    state: &AppState,
    routed: &[events::Routed],
    entries: &[InboxEntry],
) -> Result<(), StoreError> {
    let mut new: HashMap<&crate::domain::BusinessId, Vec<crate::domain::ContactKey>> =
        HashMap::new();
    for (r, e) in routed.iter().zip(entries) {
        let (Queue::Contact(contact), Some(key)) = (&e.queue, &e.key) else {
            continue;
        };
        let number = r.event.phone_number_id().unwrap_or_default();
        if let (true, Some(b)) = (key.fresh, state.businesses.of_number(number)) {
            new.entry(&b.id).or_default().push(contact.clone());
        }
    }
    // One write per business (pipelined on Redis), none for known contacts.
    for (business, contacts) in new {
        state.store.enlist(business, &contacts).await?;
    }
    Ok(())
}

/// The sealed inbox entries of a delivery's routed events, with each
/// event's consent decision (STOP, START, "Stop promotions", WhatsApp's
/// Stop/Resume) on it, and the plain texts they were sealed from.
fn seal_routed(
    state: &AppState,
    routed: &mut [events::Routed],
) -> Result<(Vec<InboxEntry>, Vec<Plain>), WebhookError> {
    let mut entries = Vec::with_capacity(routed.len());
    let mut plains = Vec::with_capacity(routed.len());
    let no_extra = crate::privacy::keywords::Extra::default();
    for r in routed.iter_mut() {
        // The privacy keywords the business's flow files add.
        let number = r.event.phone_number_id().unwrap_or_default();
        let flows = state.flow_sets.as_ref().map(|f| f.for_number(number));
        let extra = flows.as_deref().map_or(&no_extra, |f| &f.privacy);
        // STOP, START, "Stop promotions" and WhatsApp's Stop/Resume are on
        // record before the delivery is acknowledged; the event carries the
        // decision so that the worker answers what was recorded.
        // The policy of the business the customer wrote to.
        let business = state.businesses.of_number(number);
        let policy = (
            business.map_or(state.policy_version.as_str(), |b| b.policy_version.as_str()),
            business.map(|b| &b.id),
        );
        let consent = match &r.queue {
            Queue::Contact(_) => crate::privacy::consent::of_event(
                &r.event,
                &r.dedup,
                &state.pseudonymizer,
                policy,
                extra,
            ),
            _ => None,
        };
        if let (InboxEvent::Message(m), Some(c)) = (&mut r.event, &consent) {
            m.consent = Some(c.granted);
        }
        let plain = serde_json::to_vec(&r.event).map_err(|_| WebhookError::Seal)?;
        // A grant may be refused (beyond the day's grants): the event as
        // it reads then, stored instead if so.
        let refused = match &consent {
            Some(c) if c.granted => Some(refused_plain(&r.event)?),
            _ => None,
        };
        let plain = (plain, refused);
        let (sealed, refused, key) = seal_entry(state, &r.queue, &plain, None)?;
        entries.push(InboxEntry {
            queue: r.queue.clone(),
            dedup: r.dedup.clone(),
            sealed,
            consent,
            refused,
            key,
        });
        plains.push(plain);
    }
    Ok((entries, plains))
}

/// What follows a stored delivery: its consent changes counted and
/// audited, each event logged (pseudonymously), and the contacts with new
/// events handed to this instance's workers. Answers how many were new.
async fn recorded(
    state: &AppState,
    routed: &[events::Routed],
    consents: &[Option<crate::domain::consent::ConsentChange>],
    audited: Vec<Option<crate::domain::audit::AuditEvent>>,
    results: &[Appended],
) -> usize {
    // Opt-outs and opt-ins recorded with new entries (a STOP that changes
    // nothing, or a START beyond the day's grants, is stored and answered,
    // but neither recorded nor audited).
    crate::metrics::global().counted(
        &[],
        consents
            .iter()
            .zip(results)
            .filter(|(_, a)| **a == Appended::New)
            .filter_map(|(c, _)| c.as_ref()),
    );
    for (event, appended) in audited.into_iter().zip(results) {
        if let (Some(event), Appended::New) = (event, appended) {
            crate::privacy::audit::note(state.store.as_ref(), &state.audit, event).await;
        }
    }
    for (r, appended) in routed.iter().zip(results) {
        let contact = match &r.queue {
            Queue::Contact(k) => k.as_str(),
            _ => "-",
        };
        tracing::debug!(
            event = r.event.label(),
            contact,
            dedup = &r.dedup[..12],
            duplicate = *appended == Appended::Duplicate,
            "inbox"
        );
    }
    // Hand the contacts to this instance's workers (no store round trip);
    // duplicates need no work.
    for (r, appended) in routed.iter().zip(results) {
        if let Queue::Contact(k) = &r.queue
            && appended.is_new()
        {
            state.wake.inbox.push(k.clone());
        }
    }
    results.iter().filter(|a| a.is_new()).count()
}

/// The event with its grant marked refused (see
/// [`events::InboundMessage::grant_refused`]).
fn refused_plain(event: &InboxEvent) -> Result<Vec<u8>, WebhookError> {
    let mut event = event.clone();
    match &mut event {
        InboxEvent::Message(m) => m.grant_refused = true,
        InboxEvent::Preference(p) => p.grant_refused = true,
        _ => {}
    }
    serde_json::to_vec(&event).map_err(|_| WebhookError::Seal)
}

/// An event's plain text, and for a grant the text as it reads when the
/// grant is refused.
type Plain = (Vec<u8>, Option<Vec<u8>>);

/// An event sealed, its refused reading sealed (for a grant), and the
/// data key they are sealed under (a contact's).
type Sealed = (Vec<u8>, Option<Vec<u8>>, Option<EntryKey>);

/// Seals an event (and its refused reading, under the same key): a
/// contact's under its data key (the one this process used last, `stored`
/// as read from the store, or a fresh one), anything else under the
/// master key.
fn seal_entry(
    state: &AppState,
    queue: &Queue,
    (plain, refused): &Plain,
    stored: Option<Option<Vec<u8>>>,
) -> Result<Sealed, WebhookError> {
    let context = queue.name();
    let Queue::Contact(contact) = queue else {
        let sealed = state
            .keyring
            .seal_system(plain, context.as_bytes())
            .map_err(|_| WebhookError::Seal)?;
        return Ok((sealed, None, None));
    };
    let known = match stored {
        // Read from the store after a mismatch: that key, if any.
        Some(Some(wrapped)) => {
            let sealer = state
                .keyring
                .unwrap(contact, &wrapped)
                .map_err(|_| WebhookError::Seal)?;
            Some((wrapped, sealer))
        }
        Some(None) => None,
        None => state.keyring.cached(contact),
    };
    let (wrapped, sealer, fresh) = match known {
        Some((wrapped, sealer)) => (wrapped, sealer, false),
        None => {
            let (sealer, wrapped) = state
                .keyring
                .new_data_key(contact)
                .map_err(|_| WebhookError::Seal)?;
            state.keyring.remember(contact, &wrapped, &sealer);
            (wrapped, sealer, true)
        }
    };
    let sealed = sealer
        .seal(plain, context.as_bytes())
        .map_err(|_| WebhookError::Seal)?;
    let refused = match refused {
        Some(r) => Some(
            sealer
                .seal(r, context.as_bytes())
                .map_err(|_| WebhookError::Seal)?,
        ),
        None => None,
    };
    Ok((
        sealed,
        refused,
        Some(EntryKey {
            wrapped,
            fresh,
            ttl: crate::crypto::keyring::data_key_ttl(state.retention_days),
        }),
    ))
}

/// Appends the entries (and the delivery's new contact links); those
/// sealed under a data key that is not the contact's stored one (this
/// process's copy is stale: the contact was erased, or another instance
/// made its key first) are sealed again under the stored key, or a fresh
/// one, and appended again.
async fn append_sealed(
    state: &AppState,
    entries: Vec<InboxEntry>,
    plains: &[Plain],
    links: &[(crate::domain::ContactKey, crate::domain::ContactKey)],
) -> Result<Vec<Appended>, WebhookError> {
    // What a retry needs besides the sealed bytes (cheap to copy).
    let heads: Vec<(Queue, String, Option<crate::domain::consent::ConsentChange>)> = entries
        .iter()
        .map(|e| (e.queue.clone(), e.dedup.clone(), e.consent.clone()))
        .collect();
    let mut pending: Vec<usize> = (0..entries.len()).collect();
    let mut results = vec![Appended::KeyMismatch; entries.len()];
    let mut batch = entries;
    for attempt in 0..4 {
        // New contact links go with the first write.
        let got = match attempt {
            0 => state.store.append_linked(batch, links).await?,
            _ => state.store.append(batch).await?,
        };
        let mut again = Vec::new();
        let mut retry = Vec::new();
        for (i, result) in pending.iter().zip(got) {
            results[*i] = result;
            let (queue, dedup, consent) = &heads[*i];
            let (Appended::KeyMismatch, Queue::Contact(contact)) = (result, queue) else {
                continue;
            };
            state.keyring.forget(contact);
            state.contact_links.forget(contact);
            let stored = state.store.data_key(contact).await?;
            let (sealed, refused, key) = seal_entry(state, queue, &plains[*i], Some(stored))?;
            again.push(*i);
            retry.push(InboxEntry {
                queue: queue.clone(),
                dedup: dedup.clone(),
                sealed,
                consent: consent.clone(),
                refused,
                key,
            });
        }
        if retry.is_empty() {
            return Ok(results);
        }
        pending = again;
        batch = retry;
    }
    // Still racing after several tries: those entries stay
    // `KeyMismatch`; the caller refuses the delivery once the others are
    // audited and handed over (Meta delivers again).
    Ok(results)
}

async fn quarantine(
    state: &AppState,
    body: &[u8],
    error: Option<serde_json::Error>,
) -> Result<HttpResponse, WebhookError> {
    let sealed = state
        .keyring
        .seal_system(body, Queue::Quarantine.name().as_bytes())
        .map_err(|_| WebhookError::Seal)?;
    let dedup = events::quarantine_dedup(&state.pseudonymizer, body);
    state
        .store
        .append(vec![InboxEntry {
            queue: Queue::Quarantine,
            dedup,
            sealed,
            consent: None,
            refused: None,
            key: None,
        }])
        .await?;
    // serde's messages can quote the input; log only where it failed.
    let (category, line, column) = match &error {
        Some(e) => (format!("{:?}", e.classify()), e.line(), e.column()),
        None => ("not_whatsapp_business_account".to_owned(), 0, 0),
    };
    tracing::warn!(
        outcome = "quarantined",
        category,
        line,
        column,
        bytes = body.len(),
        "webhook body quarantined"
    );
    Ok(HttpResponse::Ok()
        .content_type(ContentType::plaintext())
        .body("EVENT_RECEIVED"))
}
