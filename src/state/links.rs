//! The contact keys this instance resolved lately (contact links, see
//! [`crate::store::links`]), so that most webhook deliveries route their
//! events without asking the store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::crypto::keyring::Keyring;
use crate::domain::ContactKey;
use crate::store::Resolved;

/// How long a resolved key is trusted without asking the store again: a
/// link only goes with an erasure, which this instance notices at once
/// (the erased contact's data key leaves its keyring) and another one at
/// its next write for the contact (the key no longer matches).
const CACHE_TTL: Duration = Duration::from_secs(60);
/// The most keys remembered (then it starts afresh).
const CACHE_MAX: usize = 100_000;

/// The keys this instance resolved lately: key → its canonical contact
/// (the key itself when it is no alias), only for keys of contacts that
/// exist, and only while this instance holds the canonical contact's data
/// key.
#[derive(Default)]
pub struct Cache {
    keys: Mutex<HashMap<ContactKey, (ContactKey, Instant)>>,
}

impl Cache {
    pub(crate) fn get(&self, key: &ContactKey, keyring: &Keyring) -> Option<Resolved> {
        let canonical = {
            let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            let (canonical, at) = keys.get(key)?;
            (at.elapsed() < CACHE_TTL).then(|| canonical.clone())?
        };
        if keyring.cached(&canonical).is_none() {
            // Erased here (or not held): whatever named it is stale.
            self.forget(&canonical);
            return None;
        }
        Some(Resolved {
            known: canonical == *key,
            link: (canonical != *key).then_some(canonical),
        })
    }

    pub(crate) fn put(&self, key: ContactKey, canonical: ContactKey) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.len() >= CACHE_MAX {
            keys.clear();
        }
        keys.insert(key, (canonical, Instant::now()));
    }

    /// Forgets a contact and its aliases (its data key changed: it was
    /// erased, or made again elsewhere).
    pub fn forget(&self, contact: &ContactKey) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.retain(|k, (c, _)| k != contact && c != contact);
    }
}
