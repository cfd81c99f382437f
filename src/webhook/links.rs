//! Ingress side of the contact links ([`crate::store::links`]): before a
//! delivery's events are sealed and their consent decided, each is routed
//! to its customer's canonical contact, and a link is recorded when an
//! event names both of a customer's ids for the first time.
//!
//! Cost: one read of the store per delivery that names a contact (the
//! links and data keys of every key it names, in one round trip), and one
//! write only when a link is new (once per customer).

use std::collections::HashMap;

use super::events::{Ids, Routed};
use crate::domain::ContactKey;
use crate::store::links::decide;
use crate::store::{Queue, Resolved, Store, StoreError};

/// Routes each contact event of a delivery to its canonical contact and
/// records the links the delivery shows.
pub async fn route(store: &dyn Store, routed: &mut [Routed]) -> Result<(), StoreError> {
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
        return Ok(());
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
    if !new_links.is_empty() {
        let in_force = store.link_contacts(&new_links).await?;
        for ((alias, canonical), held) in new_links.iter().zip(in_force) {
            if held != *canonical {
                // Another instance linked it first, elsewhere: follow it.
                tracing::warn!(contact = %held, "contact link made elsewhere first");
            }
            tracing::info!(contact = %held, alias = %alias, "contact ids linked");
            known.entry(alias.clone()).or_default().link = Some(held);
        }
    }
    for r in routed.iter_mut() {
        if !matches!(r.queue, Queue::Contact(_)) {
            continue;
        }
        if let Some(d) = decision(&known, &r.ids) {
            r.queue = Queue::Contact(d.canonical);
        }
    }
    Ok(())
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
