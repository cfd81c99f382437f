//! Which businesses are removed (or being removed), as this instance
//! knows it: read from the store at start and every few seconds, and set
//! at once by a removal this instance begins. The webhook discards what
//! arrives for them, by id and by number (their settings entry may be
//! gone already).

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::store::{Store, StoreError};

/// How often an instance reads the removals other instances began.
pub const REFRESH: Duration = Duration::from_secs(2);

/// The businesses removed or being removed: their ids and numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gone {
    pub ids: HashSet<String>,
    pub numbers: HashSet<String>,
    /// Some removal on record is not finished.
    pub unfinished: bool,
}

impl Gone {
    /// Whether a change for `number` (of the business `id`, when one
    /// owns it) is to be discarded.
    pub fn covers(&self, id: Option<&str>, number: &str) -> bool {
        id.is_some_and(|id| self.ids.contains(id)) || self.numbers.contains(number)
    }
}

/// This instance's [`Gone`], shared: read on every webhook (a cheap
/// `Arc` clone), replaced whole when it changes.
#[derive(Debug, Clone, Default)]
pub struct Removed(Arc<RwLock<Arc<Gone>>>);

impl Removed {
    /// The businesses gone, for a request to route with.
    pub fn snapshot(&self) -> Arc<Gone> {
        self.0.read().map(|g| g.clone()).unwrap_or_default()
    }

    pub fn insert(&self, business: &str, numbers: &[String]) {
        self.change(|g| {
            g.ids.insert(business.to_owned());
            g.numbers.extend(numbers.iter().cloned());
        });
    }

    /// Replaces the set by a changed copy (only when it changes).
    fn change(&self, f: impl FnOnce(&mut Gone)) {
        if let Ok(mut g) = self.0.write() {
            let mut next = Gone::clone(&g);
            f(&mut next);
            if next != **g {
                *g = Arc::new(next);
            }
        }
    }

    /// Whether some removal on record was not finished at the last read.
    pub fn unfinished(&self) -> bool {
        self.0.read().is_ok_and(|g| g.unfinished)
    }

    /// Reads the removals from the store.
    pub async fn refresh(&self, store: &dyn Store) -> Result<(), StoreError> {
        let mut unfinished = false;
        for (id, bytes) in store.removals().await? {
            let record = serde_json::from_slice::<super::Removal>(&bytes).ok();
            unfinished |= record.as_ref().is_none_or(|r| !r.is_done());
            let numbers = record.map(|r| r.numbers).unwrap_or_default();
            self.insert(&id, &numbers);
        }
        self.change(|g| g.unfinished = unfinished);
        Ok(())
    }
}
