//! Reading a contact's message history, oldest or newest first.

use redb::ReadableDatabase;

use super::{EmbeddedStore, HISTORY, corrupt};
use crate::domain::ContactKey;
use crate::store::StoreError;

impl EmbeddedStore {
    /// Up to `limit` history entries of `contact` (time in ms, sealed
    /// entry): the oldest first, or with `newest_first` the newest first.
    pub(super) async fn history_range(
        &self,
        contact: &ContactKey,
        newest_first: bool,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let q = format!("h:{contact}");
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let table = txn.open_table(HISTORY).map_err(corrupt)?;
            let range = table
                .range((q.as_str(), 0)..=(q.as_str(), u64::MAX))
                .map_err(corrupt)?;
            let items: Box<dyn Iterator<Item = _>> = if newest_first {
                Box::new(range.rev())
            } else {
                Box::new(range)
            };
            let mut out = Vec::new();
            for item in items.take(limit) {
                let (_, v) = item.map_err(corrupt)?;
                let (at, bytes) = v.value();
                out.push((at, bytes.to_vec()));
            }
            Ok(out)
        })
        .await
    }
}
