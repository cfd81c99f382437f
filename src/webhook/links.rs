//! Ingress side of the contact links ([`crate::store::links`]): before a
//! delivery's events are sealed and their consent decided, each is routed
//! to its customer's canonical contact, and a link is recorded when an
//! event names both of a customer's ids for the first time.
//!
//! Cost: nothing when this instance resolved every key of the delivery in
//! the last minute (see [`crate::state::links::Cache`]); otherwise one read of the store (the
//! links and data keys of the keys it does not know, in one round trip).
//! A new link (once per customer) is written with the events, in the
//! append's round trip. (Two instances that first see a customer's ids
//! together at the same moment agree on the contact, unless one of them
//! also stores the customer's first message by one id alone in that
//! moment: then the first link written holds, and later events follow it.)

use super::events::{Ids, Routed};
use crate::crypto::keyring::Keyring;
use crate::domain::ContactKey;
use std::collections::HashMap;

use crate::state::links::Cache;
use crate::store::links::decide;
use crate::store::{Queue, Resolved, Store, StoreError};

/// Routes each contact event of a delivery to its canonical contact;
/// answers the new links the delivery shows, `(alias, canonical)`, for
/// the store to record with the events ([`Store::append_linked`]).
pub async fn route(
    store: &dyn Store,
    (cache, keyring): (&Cache, &Keyring),
    routed: &mut [Routed],
) -> Result<Vec<(ContactKey, ContactKey)>, StoreError> {
    let mut keys: Vec<ContactKey> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in routed
        .iter()
        .filter(|r| matches!(r.queue, Queue::Contact(_)))
    {
        for k in [&r.ids.wa, &r.ids.user].into_iter().flatten() {
            if seen.insert(k) {
                keys.push(k.clone());
            }
        }
    }
    let mut known: HashMap<ContactKey, Resolved> = HashMap::new();
    keys.retain(|k| match cache.get(k, keyring) {
        Some(r) => {
            known.insert(k.clone(), r);
            false
        }
        None => true,
    });
    if !keys.is_empty() {
        let resolved = store.resolve_contacts(&keys).await?;
        for (k, r) in keys.into_iter().zip(resolved) {
            match &r.link {
                Some(c) => cache.put(k.clone(), c.clone()),
                None if r.known => cache.put(k.clone(), k.clone()),
                None => {}
            }
            known.insert(k, r);
        }
    }
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
        cache.put(alias.clone(), canonical.clone());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Key32;

    fn key(c: char) -> ContactKey {
        ContactKey::parse(&c.to_string().repeat(32)).expect("key")
    }

    #[test]
    fn a_cached_key_counts_only_while_its_contact_s_data_key_is_held() {
        let keyring = Keyring::new(&crate::crypto::keyring::MasterKeys {
            current: Key32::new([3; 32]),
            previous: Vec::new(),
        });
        let cache = Cache::default();
        cache.put(key('a'), key('b'));
        cache.put(key('b'), key('b'));
        assert_eq!(cache.get(&key('a'), &keyring), None, "no data key held");
        let (sealer, wrapped) = keyring.new_data_key(&key('b')).expect("key");
        keyring.remember(&key('b'), &wrapped, &sealer);
        assert_eq!(cache.get(&key('a'), &keyring), None, "dropped when missed");
        cache.put(key('a'), key('b'));
        cache.put(key('b'), key('b'));
        let alias = cache.get(&key('a'), &keyring).expect("cached");
        assert_eq!((alias.link, alias.known), (Some(key('b')), false));
        let canonical = cache.get(&key('b'), &keyring).expect("cached");
        assert_eq!((canonical.link, canonical.known), (None, true));
        // Erased here: the data key leaves the keyring, and a new one
        // made later does not bring the old links back.
        keyring.forget(&key('b'));
        assert_eq!(cache.get(&key('b'), &keyring), None);
        keyring.remember(&key('b'), &wrapped, &sealer);
        assert_eq!(cache.get(&key('a'), &keyring), None);
        // Or elsewhere: the cache forgets the contact and its aliases.
        cache.put(key('a'), key('b'));
        cache.forget(&key('b'));
        assert_eq!(cache.get(&key('a'), &keyring), None);
        assert_eq!(cache.get(&key('b'), &keyring), None);
    }
}
