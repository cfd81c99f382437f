//! The legal holds role on Redis (see [`crate::store::HoldStore`]): the
//! contact's mark `P{s:N}:c:<contact>:held` (read by `purge.lua`), their
//! profile, history and data key made persistent while held, and the
//! held contacts listed in `P{meta}:held`.

use super::*;
use crate::store::HoldStore;

/// How much longer than the profile the data key is kept.
const KEY_MORE: u64 = 2 * 86_400;

impl RedisStore {
    fn held_key(&self) -> String {
        format!("{}{{meta}}:held", self.prefix)
    }
}

#[async_trait]
impl HoldStore for RedisStore {
    async fn hold_data(&self, contact: &ContactKey, since: u64) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("HSETNX")
            .arg(self.held_key())
            .arg(contact.as_str())
            .arg(since)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        // One slot: the contact's keys.
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.contact_key(contact, "held"))
            .arg(since)
            .ignore();
        for suffix in ["profile", "history", "key"] {
            pipe.cmd("PERSIST")
                .arg(self.contact_key(contact, suffix))
                .ignore();
        }
        let () = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn release_data(
        &self,
        contact: &ContactKey,
        keep_secs: u64,
        _now: u64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("DEL")
            .arg(self.contact_key(contact, "held"))
            .ignore();
        for (suffix, ttl) in [
            ("profile", keep_secs),
            ("history", keep_secs),
            ("key", keep_secs + KEY_MORE),
        ] {
            pipe.cmd("EXPIRE")
                .arg(self.contact_key(contact, suffix))
                .arg(ttl.max(1))
                .ignore();
        }
        let () = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        let _: i64 = redis::cmd("HDEL")
            .arg(self.held_key())
            .arg(contact.as_str())
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn held(&self) -> Result<Vec<(ContactKey, u64)>, StoreError> {
        let mut conn = self.conn.clone();
        let all: Vec<(String, u64)> = redis::cmd("HGETALL")
            .arg(self.held_key())
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(all
            .into_iter()
            .filter_map(|(k, since)| Some((ContactKey::parse(&k)?, since)))
            .collect())
    }
}
