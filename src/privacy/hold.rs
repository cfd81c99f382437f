//! Legal holds over the store (the rules are [`crate::domain::hold`]):
//! placing and lifting a hold, an erasure asked while it holds noted as
//! waiting, and the disclosures made to authorities. The records are
//! sealed under the master keys (`kind:contact` as the context) and
//! changed by compare-and-swap, so two instances never undo each other;
//! every change is audited.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crypto::keyring::Keyring;
use crate::domain::audit::{Actor, AuditEvent};
use crate::domain::hold::{Asker, DISCLOSURES_MAX, Disclosure, Hold, disclosure_kind, hold_kind};
use crate::domain::{BusinessId, ContactKey};
use crate::privacy::audit::{Chain, note};
use crate::store::{Store, StoreError};

/// How many times a change is tried against concurrent writers.
const TRIES: usize = 8;

/// What a use case needs: the store, the master keys, the audit chain.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub store: &'a dyn Store,
    pub keyring: &'a Keyring,
    pub audit: &'a Chain,
}

/// Whose record: the business and the contact.
pub type Whose<'a> = (&'a BusinessId, &'a ContactKey);

fn seal<T: Serialize>(
    keyring: &Keyring,
    kind: &str,
    contact: &ContactKey,
    value: &T,
) -> Result<Vec<u8>, StoreError> {
    crate::store::seal_record(keyring, (kind, contact.as_str()), value)
}

/// A record that does not open (a master key no longer configured) is
/// an error: a hold silently read as absent would let an erasure through.
fn open<T: DeserializeOwned>(
    keyring: &Keyring,
    kind: &str,
    contact: &ContactKey,
    sealed: &[u8],
) -> Result<T, StoreError> {
    crate::store::open_record(keyring, (kind, contact.as_str()), sealed)
}

/// The audit entry of a change to `contact`'s hold or disclosures.
fn event(
    (business, contact): Whose<'_>,
    kind: &str,
    detail: String,
    by: Option<String>,
    now: u64,
) -> AuditEvent {
    AuditEvent {
        at: now,
        kind: kind.to_owned(),
        contact: Some(contact.as_str().to_owned()),
        actor: if by.is_some() {
            Actor::Admin
        } else {
            Actor::Customer
        },
        detail: Some(detail),
        business: business.tag(),
        by,
    }
}

/// The contact's hold, with its record as stored (`None`: not held).
async fn read(
    store: &dyn Store,
    keyring: &Keyring,
    whose: Whose<'_>,
) -> Result<Option<(Hold, Vec<u8>)>, StoreError> {
    let (business, contact) = whose;
    let kind = hold_kind(business);
    match store.doc(&kind, contact.as_str()).await? {
        None => Ok(None),
        Some(sealed) => Ok(Some((open(keyring, &kind, contact, &sealed)?, sealed))),
    }
}

/// The contact's hold (`None`: not held).
pub async fn hold_of(
    store: &dyn Store,
    keyring: &Keyring,
    whose: Whose<'_>,
) -> Result<Option<Hold>, StoreError> {
    Ok(read(store, keyring, whose).await?.map(|(h, _)| h))
}

/// Whether the contact is held (a record there, whether or not it opens).
pub async fn is_held(store: &dyn Store, whose: Whose<'_>) -> Result<bool, StoreError> {
    let kind = hold_kind(whose.0);
    Ok(store.doc(&kind, whose.1.as_str()).await?.is_some())
}

/// Places `hold` on the contact: their data is kept from then on.
/// Answers the hold already there instead when there is one.
pub async fn place(
    ctx: Ctx<'_>,
    whose: Whose<'_>,
    hold: Hold,
) -> Result<Result<(), Hold>, StoreError> {
    let (business, contact) = whose;
    let kind = hold_kind(business);
    let sealed = seal(ctx.keyring, &kind, contact, &hold)?;
    if !ctx
        .store
        .swap_doc(&kind, contact.as_str(), None, sealed)
        .await?
    {
        let there = hold_of(ctx.store, ctx.keyring, whose)
            .await?
            .unwrap_or(hold);
        // Asked again after a failure between the two writes: the data
        // is kept now.
        ctx.store.hold_data(contact, there.since).await?;
        return Ok(Err(there));
    }
    ctx.store.hold_data(contact, hold.since).await?;
    tracing::info!(contact = %contact, "legal hold placed");
    let detail = format!("reference {}", hold.reference);
    let e = event(
        whose,
        "hold_placed",
        detail,
        Some(hold.by.clone()),
        hold.since,
    );
    note(ctx.store, ctx.audit, e).await;
    Ok(Ok(()))
}

/// Notes an erasure asked at `now` by `asked_by` as waiting for the end of
/// the contact's hold, audited (`erasure_held`). Answers false, changing
/// nothing, when the contact is not held: the erasure goes ahead.
pub async fn note_waiting(
    ctx: Ctx<'_>,
    whose: Whose<'_>,
    asked_by: Asker,
    now: u64,
) -> Result<bool, StoreError> {
    let (business, contact) = whose;
    let kind = hold_kind(business);
    for _ in 0..TRIES {
        let Some((hold, sealed)) = read(ctx.store, ctx.keyring, whose).await? else {
            return Ok(false);
        };
        if hold.waiting.iter().any(|w| w.asked_by == asked_by) {
            // Asked again (or the same step redone): noted already.
            return Ok(true);
        }
        let reference = hold.reference.clone();
        let next = hold.with_waiting(now, asked_by.clone());
        let record = seal(ctx.keyring, &kind, contact, &next)?;
        if ctx
            .store
            .swap_doc(&kind, contact.as_str(), Some(&sealed), record)
            .await?
        {
            tracing::info!(contact = %contact, "erasure held: the contact's data is under a legal hold");
            let by = match &asked_by {
                Asker::Customer => None,
                Asker::Support { caller, .. } => Some(caller.clone()),
            };
            let detail = format!("{}; kept under legal hold {reference}", asked_by.describe());
            note(
                ctx.store,
                ctx.audit,
                event(whose, "erasure_held", detail, by, now),
            )
            .await;
            return Ok(true);
        }
    }
    Err(StoreError::Unavailable(
        "the hold changed too often; try again".into(),
    ))
}

/// The first half of lifting the contact's hold: their data expires again
/// as usual (`keep_secs` from `now`). Answers the hold, whose waiting
/// erasures the caller carries out before [`finish_lift`]; `None` when
/// the contact is not held.
pub async fn release(
    ctx: Ctx<'_>,
    whose: Whose<'_>,
    keep_secs: u64,
    now: u64,
) -> Result<Option<Hold>, StoreError> {
    let Some(hold) = hold_of(ctx.store, ctx.keyring, whose).await? else {
        return Ok(None);
    };
    ctx.store.release_data(whose.1, keep_secs, now).await?;
    Ok(Some(hold))
}

/// The end of lifting a hold: the record goes (after its waiting
/// erasures were carried out, so a crash in between loses none), audited
/// (`hold_lifted`, with how many erasures it let through).
pub async fn finish_lift(
    ctx: Ctx<'_>,
    whose: Whose<'_>,
    hold: &Hold,
    by: String,
    now: u64,
) -> Result<(), StoreError> {
    let (business, contact) = whose;
    ctx.store
        .drop_doc(&hold_kind(business), contact.as_str())
        .await?;
    tracing::info!(contact = %contact, "legal hold lifted");
    let detail = format!(
        "reference {}; {} waiting erasure request(s) carried out",
        hold.reference,
        hold.waiting.len()
    );
    note(
        ctx.store,
        ctx.audit,
        event(whose, "hold_lifted", detail, Some(by), now),
    )
    .await;
    Ok(())
}

/// The disclosures recorded about the contact, oldest first.
pub async fn disclosures(
    store: &dyn Store,
    keyring: &Keyring,
    whose: Whose<'_>,
) -> Result<Vec<Disclosure>, StoreError> {
    let (business, contact) = whose;
    let kind = disclosure_kind(business);
    match store.doc(&kind, contact.as_str()).await? {
        None => Ok(Vec::new()),
        Some(sealed) => open(keyring, &kind, contact, &sealed),
    }
}

/// Records a disclosure about the contact, audited
/// (`disclosure_recorded`: the authority and the legal basis, never the
/// data). Answers false when the contact already has
/// [`DISCLOSURES_MAX`] of them.
pub async fn record_disclosure(
    ctx: Ctx<'_>,
    whose: Whose<'_>,
    disclosure: &Disclosure,
) -> Result<bool, StoreError> {
    let (business, contact) = whose;
    let kind = disclosure_kind(business);
    for _ in 0..TRIES {
        let found = ctx.store.doc(&kind, contact.as_str()).await?;
        let mut list: Vec<Disclosure> = match &found {
            None => Vec::new(),
            Some(sealed) => open(ctx.keyring, &kind, contact, sealed)?,
        };
        if list.len() >= DISCLOSURES_MAX {
            return Ok(false);
        }
        list.push(disclosure.clone());
        let record = seal(ctx.keyring, &kind, contact, &list)?;
        if ctx
            .store
            .swap_doc(&kind, contact.as_str(), found.as_deref(), record)
            .await?
        {
            let secret = match disclosure.secret_until {
                Some(u) => format!("; not to be told to the customer until {u}"),
                None => String::new(),
            };
            let detail = format!(
                "to {}, legal basis {}{secret}",
                disclosure.to, disclosure.legal_basis
            );
            let e = event(
                whose,
                "disclosure_recorded",
                detail,
                Some(disclosure.by.clone()),
                disclosure.recorded_at,
            );
            note(ctx.store, ctx.audit, e).await;
            return Ok(true);
        }
    }
    Err(StoreError::Unavailable(
        "the disclosures changed too often; try again".into(),
    ))
}

/// Forgets the contact's hold and disclosures (their erasure).
pub async fn forget(store: &dyn Store, whose: Whose<'_>) -> Result<(), StoreError> {
    let (business, contact) = whose;
    store
        .drop_doc(&hold_kind(business), contact.as_str())
        .await?;
    store
        .drop_doc(&disclosure_kind(business), contact.as_str())
        .await?;
    Ok(())
}

/// Drops every hold and disclosure of a business being removed, and
/// lets its held contacts' data expire again (their erasure follows).
pub async fn drop_business(store: &dyn Store, business: &BusinessId) -> Result<(), StoreError> {
    let kind = hold_kind(business);
    for (id, _) in store.docs(&kind).await? {
        if let Some(contact) = ContactKey::parse(&id) {
            store
                .release_data(&contact, 0, crate::clock::now_secs())
                .await?;
        }
    }
    store.drop_docs(&kind).await?;
    store.drop_docs(&disclosure_kind(business)).await?;
    Ok(())
}

/// Keeps every held contact's data from expiring again (a write since
/// the hold set the usual times to live); the retention job runs it on
/// each pass. Answers how many contacts are held.
pub async fn keep_held(store: &dyn Store) -> Result<usize, StoreError> {
    let held = store.held().await?;
    for (contact, since) in &held {
        store.hold_data(contact, *since).await?;
    }
    Ok(held.len())
}
