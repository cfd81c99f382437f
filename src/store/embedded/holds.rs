//! The legal holds role on the embedded store (see
//! [`crate::store::HoldStore`]): the table `held` (contact → since), and
//! the held contact's profile and data key made to never expire.

use super::*;
use crate::store::HoldStore;

pub(super) const HELD: TableDefinition<&str, u64> = TableDefinition::new("held");

/// How much longer than the profile the data key is kept (as on Redis).
const KEY_MORE: u64 = 2 * 86_400;

pub(super) fn create_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(HELD).map_err(corrupt)?;
    Ok(())
}

/// Whether `contact` is held (read inside a write, e.g. by the purge).
pub(super) fn is_held(
    held: &impl ReadableTable<&'static str, u64>,
    contact: &str,
) -> Result<bool, StoreError> {
    Ok(held.get(contact).map_err(corrupt)?.is_some())
}

/// Sets the expiry of `contact`'s entry in `table` (a profile, a data
/// key), if it has one.
fn expire_at(
    txn: &redb::WriteTransaction,
    table: TableDefinition<&str, (u64, &[u8])>,
    contact: &str,
    at: u64,
) -> Result<(), StoreError> {
    let mut t = txn.open_table(table).map_err(corrupt)?;
    let found = t
        .get(contact)
        .map_err(corrupt)?
        .map(|v| v.value().1.to_vec());
    if let Some(bytes) = found {
        t.insert(contact, (at, bytes.as_slice())).map_err(corrupt)?;
    }
    Ok(())
}

#[async_trait]
impl HoldStore for EmbeddedStore {
    async fn hold_data(&self, contact: &ContactKey, since: u64) -> Result<(), StoreError> {
        let key = contact.as_str().to_owned();
        self.write(move |txn| {
            {
                let mut held = txn.open_table(HELD).map_err(corrupt)?;
                let first = held.get(key.as_str()).map_err(corrupt)?.map(|v| v.value());
                held.insert(key.as_str(), first.unwrap_or(since))
                    .map_err(corrupt)?;
            }
            expire_at(txn, PROFILES, &key, u64::MAX)?;
            expire_at(txn, DATA_KEYS, &key, u64::MAX)
        })
        .await
    }

    async fn release_data(
        &self,
        contact: &ContactKey,
        keep_secs: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        let key = contact.as_str().to_owned();
        self.write(move |txn| {
            let was = txn
                .open_table(HELD)
                .map_err(corrupt)?
                .remove(key.as_str())
                .map_err(corrupt)?
                .is_some();
            if was {
                expire_at(txn, PROFILES, &key, now.saturating_add(keep_secs))?;
                let key_until = now.saturating_add(keep_secs).saturating_add(KEY_MORE);
                expire_at(txn, DATA_KEYS, &key, key_until)?;
            }
            Ok(())
        })
        .await
    }

    async fn held(&self) -> Result<Vec<(ContactKey, u64)>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let t = txn.open_table(HELD).map_err(corrupt)?;
            let mut out = Vec::new();
            for item in t.iter().map_err(corrupt)? {
                let (k, v) = item.map_err(corrupt)?;
                if let Some(c) = ContactKey::parse(k.value()) {
                    out.push((c, v.value()));
                }
            }
            Ok(out)
        })
        .await
    }
}
