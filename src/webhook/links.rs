//! Ingress side of the contact links ([`crate::store::links`]): before a
//! delivery's events are sealed and their consent decided, each is routed
//! to its customer's canonical contact, and a link is recorded when an
//! event names both of a customer's ids for the first time.
//!
//! Cost: one read of the store per delivery that names a contact (the
//! links and data keys of every key it names, in one round trip); a new
//! link (once per customer) is written with the events, in the append's
//! round trip. (Two instances that first see a customer's ids together at
//! the same moment agree on the contact, unless one of them also stores
//! the customer's first message by one id alone in that moment: then the
//! first link written holds, and later events follow it.)

use std::collections::HashMap;

use super::events::{Ids, Routed};
use crate::domain::ContactKey;
use crate::store::links::decide;
use crate::store::{Queue, Resolved, Store, StoreError};

/// Routes each contact event of a delivery to its canonical contact;
/// answers the new links the delivery shows, `(alias, canonical)`, for
/// the store to record with the events ([`Store::append_linked`]).
pub async fn route(
    store: &dyn Store,
    routed: &mut [Routed],
) -> Result<Vec<(ContactKey, ContactKey)>, StoreError> {
    let mut keys: Vec<ContactKey> = Vec::new();
    for r in routed
        .iter()
        .filter(|r| matches!(r.queue, Queue::Contact(_)))
    {
        for k in [&r.ids.wa, &r.ids.user].into_iter().flatten() {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let resolved = store.resolve_contacts(&keys).await?;
    let mut known: HashMap<ContactKey, Resolved> = keys.into_iter().zip(resolved).collect();
    // In delivery order: each event's contact will be known once it is
    // stored, and a pair's link holds for the events around it.
    let mut new_links: Vec<(ContactKey, ContactKey)> = Vec::new();
    for r in routed
        .iter()
        .filter(|r| matches!(r.queue, Queue::Contact(_)))
    {
        let Some(d) = decision(&known, &r.ids) else {
            continue;
        };
        if d.conflict {
            tracing::warn!(contact = %d.canonical, "a customer's two ids name two contacts; not merged");
        }
        if let Some((alias, canonical)) = d.link
            && !new_links.iter().any(|(a, _)| *a == alias)
        {
            known.entry(alias.clone()).or_default().link = Some(canonical.clone());
            new_links.push((alias, canonical));
        }
        known.entry(d.canonical).or_default().known = true;
    }
    for (alias, canonical) in &new_links {
        tracing::info!(contact = %canonical, alias = %alias, "contact ids linked");
    }
    for r in routed.iter_mut() {
        if !matches!(r.queue, Queue::Contact(_)) {
            continue;
        }
        if let Some(d) = decision(&known, &r.ids) {
            r.queue = Queue::Contact(d.canonical);
        }
    }
    Ok(new_links)
}

fn decision(
    known: &HashMap<ContactKey, Resolved>,
    ids: &Ids,
) -> Option<crate::store::links::Decision> {
    let none = Resolved::default();
    let side = |k: &Option<ContactKey>| {
        k.as_ref()
            .map(|k| (k.clone(), known.get(k).unwrap_or(&none).clone()))
    };
    let (wa, user) = (side(&ids.wa), side(&ids.user));
    decide(
        wa.as_ref().map(|(k, r)| (k, r)),
        user.as_ref().map(|(k, r)| (k, r)),
    )
}
