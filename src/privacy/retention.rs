//! Keeping data only as long as needed: message history older than
//! `privacy.retention_days` is purged by a background job on every
//! instance (each pass is safe to run concurrently). Profiles expire
//! `privacy.retention_days` after the contact's last message, sessions
//! after `flows.session_ttl`, delivery records and dead letters after 30
//! days: Redis by the keys' time to live, the embedded store by the same
//! pass ([`crate::store::Store::purge_expired`]). A contact under a
//! legal hold keeps everything ([`crate::privacy::hold`]). The same job
//! rewraps data keys while a master key is being rotated.

use std::sync::Weak;
use std::time::Duration;

use crate::clock::now_ms;
use crate::crypto::keyring::Keyring;
use crate::shutdown::Shutdown;
use crate::store::Store;

/// How often the purge runs.
pub const EVERY: Duration = Duration::from_secs(3600);
/// Contacts looked at per store call.
const BATCH: usize = 500;

/// One pass: purges history written more than `keep` ago; answers how many
/// contacts were looked at.
pub async fn purge(store: &dyn Store, keep: Duration) -> Result<usize, crate::store::StoreError> {
    let before = now_ms().saturating_sub(keep.as_millis() as u64);
    let mut total = 0;
    // Bounded: a pass never runs away, the next one goes on.
    for _ in 0..1000 {
        let n = store.purge_history(before, BATCH).await?;
        total += n;
        if n == 0 {
            break;
        }
    }
    Ok(total)
}

/// Runs the purge now and every [`EVERY`] until the shutdown, or until
/// the application is gone (it holds the store only during a pass, so a
/// stopped application's store is not kept open). While a previous master
/// key is in force, each pass also rewraps the data keys still under it.
pub async fn run(store: Weak<dyn Store>, keep: Duration, keyring: Keyring, stop: Shutdown) {
    while !stop.is_stopping() {
        let Some(store) = store.upgrade() else {
            return;
        };
        // Held contacts keep everything, however old (legal holds).
        if let Err(e) = crate::privacy::hold::keep_held(store.as_ref()).await {
            tracing::warn!(error = %e, "retention: keeping held contacts' data failed; will retry");
        }
        match purge(store.as_ref(), keep).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(contacts = n, "retention: old message history purged"),
            Err(e) => tracing::warn!(error = %e, "retention: purge failed; will retry"),
        }
        match store.purge_expired(crate::clock::now_secs()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(records = n, "retention: records past their time purged"),
            Err(e) => tracing::warn!(error = %e, "retention: purge failed; will retry"),
        }
        match prune_owners(store.as_ref(), crate::clock::now_secs()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                contacts = n,
                "retention: owners of expired contacts forgotten"
            ),
            Err(e) => tracing::warn!(error = %e, "retention: pruning owners failed; will retry"),
        }
        if keyring.rotating() {
            rewrap(store.as_ref(), &keyring).await;
        }
        drop(store);
        stop.sleep(EVERY).await;
    }
}

/// One pass over the owner index: a contact whose data expired (no data
/// key, not suppressed) at least [`crate::store::PRUNE_GRACE`] ago, as
/// an earlier pass found, is no longer any business's. Answers how many.
pub async fn prune_owners(store: &dyn Store, now: u64) -> Result<u64, crate::store::StoreError> {
    let (mut pruned, mut cursor) = (0, None);
    loop {
        let (n, next) = store.prune_owners(cursor, 500, now).await?;
        pruned += n;
        match next {
            Some(c) => cursor = Some(c),
            None => return Ok(pruned),
        }
    }
}

/// One rewrap pass, logged.
pub async fn rewrap(store: &dyn Store, keyring: &Keyring) {
    match crate::privacy::keys::rewrap_all(store, keyring).await {
        Ok(r) => tracing::info!(
            rewrapped = r.rewrapped,
            already = r.current,
            unreadable = r.unreadable,
            key_id = %keyring.current_id(),
            "data keys rewrapped under the current master key"
        ),
        Err(e) => tracing::warn!(error = %e, "rewrapping data keys failed; will retry"),
    }
}
