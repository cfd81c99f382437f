//! Reading a contact's message history on Redis, oldest or newest first.

use redis::Value;

use super::{MAX_COUNT, RedisStore, unavailable};
use crate::domain::ContactKey;
use crate::store::StoreError;

impl RedisStore {
    /// Up to `limit` history entries of `contact` (time in ms, sealed
    /// entry): the oldest first, or with `newest_first` the newest first.
    pub(super) async fn history_range(
        &self,
        contact: &ContactKey,
        newest_first: bool,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let (cmd, from, to) = if newest_first {
            ("XREVRANGE", "+", "-")
        } else {
            ("XRANGE", "-", "+")
        };
        let reply: redis::streams::StreamRangeReply = redis::cmd(cmd)
            .arg(self.contact_key(contact, "history"))
            .arg(from)
            .arg(to)
            .arg("COUNT")
            .arg(limit.min(MAX_COUNT))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(reply
            .ids
            .into_iter()
            .filter_map(|sid| {
                let at = sid.id.split('-').next()?.parse().ok()?;
                match sid.map.get("h") {
                    Some(Value::BulkString(b)) => Some((at, b.clone())),
                    _ => None,
                }
            })
            .collect())
    }
}
