//! The privacy desk's records: the requests that reached the support team
//! by email, phone or letter ([`crate::domain::desk`]), sealed under the
//! master keys in the store's records (kind `desk:<business>`), changed
//! only by compare-and-swap, and each act on one audited with the
//! request's reference.

use crate::crypto::keyring::Keyring;
use crate::domain::BusinessId;
use crate::domain::audit::{Actor, AuditEvent};
use crate::domain::desk::{DeskRequest, kind};
use crate::privacy::audit::{Chain, note};
use crate::store::{Store, StoreError};

/// How many times a change is tried against concurrent writers.
const TRIES: usize = 8;

/// What the desk works with: the store, the keys, the audit chain.
#[derive(Clone, Copy)]
pub struct Desk<'a> {
    pub store: &'a dyn Store,
    pub keyring: &'a Keyring,
    pub audit: &'a Chain,
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A new request id: `dr_` and 16 hex digits.
pub fn new_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("dr_{}", &u[..16])
}

impl Desk<'_> {
    fn seal(&self, business: &BusinessId, r: &DeskRequest) -> Result<Vec<u8>, StoreError> {
        crate::store::seal_record(self.keyring, (&kind(business), &r.id), r)
    }

    fn open(&self, business: &BusinessId, id: &str, sealed: &[u8]) -> Option<DeskRequest> {
        crate::store::open_record(self.keyring, (&kind(business), id), sealed).ok()
    }

    /// Keeps a new request (its id is new: a clash is an error).
    pub async fn add(&self, business: &BusinessId, r: &DeskRequest) -> Result<(), StoreError> {
        let sealed = self.seal(business, r)?;
        let kind = kind(business);
        match self.store.swap_doc(&kind, &r.id, None, sealed).await? {
            true => Ok(()),
            false => Err(corrupt("a desk request with this id exists already")),
        }
    }

    /// The business's requests, the ones received first on top (records
    /// that do not open are left out).
    pub async fn list(&self, business: &BusinessId) -> Result<Vec<DeskRequest>, StoreError> {
        let mut list: Vec<DeskRequest> = (self.store.docs(&kind(business)).await?)
            .into_iter()
            .filter_map(|(id, sealed)| self.open(business, &id, &sealed))
            .collect();
        list.sort_by(|a, b| (&a.received, &a.id).cmp(&(&b.received, &b.id)));
        Ok(list)
    }

    /// The request `id` of the business.
    pub async fn get(
        &self,
        business: &BusinessId,
        id: &str,
    ) -> Result<Option<DeskRequest>, StoreError> {
        let sealed = self.store.doc(&kind(business), id).await?;
        Ok(sealed.and_then(|s| self.open(business, id, &s)))
    }

    /// Applies `change` to the request `id`, atomically against other
    /// writers. `Ok(None)`: there is no such request; the change's own
    /// refusal is `Ok(Some(Err(..)))` and changes nothing.
    pub async fn update<E>(
        &self,
        business: &BusinessId,
        id: &str,
        change: impl Fn(&mut DeskRequest) -> Result<(), E>,
    ) -> Result<Option<Result<DeskRequest, E>>, StoreError> {
        let kind = kind(business);
        for _ in 0..TRIES {
            let Some(sealed) = self.store.doc(&kind, id).await? else {
                return Ok(None);
            };
            let Some(mut r) = self.open(business, id, &sealed) else {
                return Err(corrupt("the desk request cannot be opened"));
            };
            if let Err(e) = change(&mut r) {
                return Ok(Some(Err(e)));
            }
            let next = self.seal(business, &r)?;
            if self.store.swap_doc(&kind, id, Some(&sealed), next).await? {
                return Ok(Some(Ok(r)));
            }
        }
        Err(corrupt("the desk request kept changing; try again"))
    }

    /// Audits an act on `r` by `by`: `kind`, with the request's reference
    /// in the detail (never personal data).
    pub async fn audit(
        &self,
        business: &BusinessId,
        r: &DeskRequest,
        (kind, what): (&str, &str),
        (at, by): (u64, &str),
    ) {
        let event = AuditEvent {
            at,
            kind: kind.to_owned(),
            contact: Some(r.contact.clone()),
            actor: Actor::Admin,
            detail: Some(format!("request {}: {what}", r.reference)),
            business: business.tag(),
            by: Some(by.to_owned()),
        };
        note(self.store, self.audit, event).await;
    }
}

/// A request as the admin API and the console show it (no personal
/// data: the contact's pseudonymous key and the reference).
pub fn view(r: &DeskRequest, now: u64) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "kind": r.kind.as_str(),
        "contact": r.contact,
        "channel": r.channel.as_str(),
        "reference": r.reference,
        "received": r.received,
        "deadline": r.deadline,
        "state": r.state.as_str(),
        "open": r.state.is_open(),
        "overdue": r.overdue(now),
        "outcome": r.outcome,
        "history": r.history,
    })
}
