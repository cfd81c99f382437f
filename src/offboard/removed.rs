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
}

impl Gone {
    /// Whether a change for `number` (of the business `id`, when one
    /// owns it) is to be discarded.
    pub fn covers(&self, id: Option<&str>, number: &str) -> bool {
        id.is_some_and(|id| self.ids.contains(id)) || self.numbers.contains(number)
    }
}

/// This instance's [`Gone`], shared.
#[derive(Debug, Clone, Default)]
pub struct Removed(Arc<RwLock<Gone>>);

impl Removed {
    /// The businesses gone, for a request to route with.
    pub fn snapshot(&self) -> Gone {
        self.0.read().map(|g| g.clone()).unwrap_or_default()
    }

    pub fn insert(&self, business: &str, numbers: &[String]) {
        if let Ok(mut g) = self.0.write() {
            g.ids.insert(business.to_owned());
            g.numbers.extend(numbers.iter().cloned());
        }
    }

    /// Reads the removals from the store.
    pub async fn refresh(&self, store: &dyn Store) -> Result<(), StoreError> {
        for (id, bytes) in store.removals().await? {
            let numbers = serde_json::from_slice::<super::Removal>(&bytes)
                .map(|r| r.numbers)
                .unwrap_or_default();
            self.insert(&id, &numbers);
        }
        Ok(())
    }

    /// Reads the removals every [`REFRESH`] until `stop`.
    pub async fn watch(self, store: std::sync::Weak<dyn Store>, stop: crate::shutdown::Shutdown) {
        while !stop.is_stopping() {
            stop.sleep(REFRESH).await;
            let Some(store) = store.upgrade() else { return };
            if let Err(e) = self.refresh(store.as_ref()).await {
                tracing::warn!(error = %e, "cannot read the businesses' removals");
            }
        }
    }
}
