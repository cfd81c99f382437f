//! Carrying out an erasure the customer confirmed: everything kept about
//! the contact goes, under every id they are known by, and the data key
//! is forgotten. The sender calls it when the erasure's turn comes in the
//! contact's outbox (after the final confirmation is out), unless the
//! contact's data is under a legal hold by then ([`held`]).

use crate::crypto::keyring::Keyring;
use crate::domain::audit::{Actor, AuditEvent};
use crate::domain::{BusinessId, ContactKey};
use crate::privacy::audit::{Chain, note};
use crate::store::{Store, StoreError, stats};

/// Erases the contact (their outbox too, with the claim's lease), counts
/// it and audits it.
pub async fn erase(
    store: &dyn Store,
    keyring: &Keyring,
    audit: &Chain,
    (contact, business): (&ContactKey, &BusinessId),
    now: u64,
) -> Result<(), StoreError> {
    // With every id the customer is known by (their links too).
    let aliases = store.erase_contact(contact, business, now).await?;
    aliases.iter().for_each(|a| keyring.forget(a));
    // Gone from the agents' inbox too, and their disclosures.
    let waiting = crate::domain::waiting::kind(business);
    store.drop_doc(&waiting, contact.as_str()).await?;
    crate::privacy::hold::forget(store, (business, contact)).await?;
    crate::metrics::global().event(business, stats::ERASURES);
    // The data key is destroyed with the rest; this process forgets it
    // too (a later message starts with a new key).
    keyring.forget(contact);
    tracing::info!(contact = %contact, "contact erased");
    let event = AuditEvent {
        at: now,
        kind: "erasure_completed".to_owned(),
        contact: Some(contact.as_str().to_owned()),
        actor: Actor::System,
        detail: None,
        business: business.tag(),
        by: None,
    };
    note(store, audit, event).await;
    Ok(())
}

/// Whether the contact is under a legal hold: then the erasure is noted
/// as waiting for its end (asked by the customer) and nothing is erased.
pub async fn held(
    store: &dyn Store,
    keyring: &Keyring,
    audit: &Chain,
    (contact, business): (&ContactKey, &BusinessId),
    now: u64,
) -> Result<bool, StoreError> {
    let ctx = crate::privacy::hold::Ctx {
        store,
        keyring,
        audit,
    };
    let asker = crate::domain::hold::Asker::Customer;
    crate::privacy::hold::note_waiting(ctx, (business, contact), asker, now).await
}

/// What the customer is told when their confirmed erasure waits for the
/// end of a legal hold.
pub fn held_message() -> crate::domain::outbound::Message {
    crate::domain::outbound::Message::Flow {
        message: crate::domain::outbound::Outgoing::Text {
            body: crate::domain::hold::HELD_ERASURE_TEXT.to_owned(),
            preview_url: false,
        },
    }
}
