//! Open breakers as this instance knows them (a paused number sends
//! nothing but a probe now and then).

use super::*;

/// Open breakers, as this instance knows them: updated at once by this
/// instance's senders and re-read from the store every second (for the
/// other instances').
#[derive(Clone, Default)]
pub struct Breakers {
    inner: Arc<Mutex<KnownBreakers>>,
}

/// When the store was last read, and the open breakers by number.
type KnownBreakers = (Option<Instant>, HashMap<String, Breaker>);

impl Breakers {
    pub(super) async fn get(
        &self,
        store: &dyn Store,
        number: &str,
    ) -> Result<Option<Breaker>, StoreError> {
        let fresh = {
            let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            g.0.is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        };
        if !fresh {
            let all = store.breakers().await?;
            let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            *g = (Some(Instant::now()), all.into_iter().collect());
        }
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Ok(g.1.get(number).cloned())
    }

    pub(super) fn set(&self, number: &str, b: Option<Breaker>) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match b {
            Some(b) => {
                g.1.insert(number.to_owned(), b);
            }
            None => {
                g.1.remove(number);
            }
        }
    }

    /// Forgets what it knows (the token was reloaded).
    pub fn clear(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *g = (None, HashMap::new());
    }
}
