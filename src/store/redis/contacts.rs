//! The Redis backend: the contacts role (see [`crate::store::ContactStore`]).

use super::*;
use crate::store::{CampaignStore, ContactStore};

#[async_trait]
impl ContactStore for RedisStore {
    async fn erase(&self, contact: &ContactKey, at: u64) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        // The suppression mark first: a crash after it leaves the data,
        // and erasing again is safe.
        let _: i64 = redis::cmd("HSET")
            .arg(format!("{}{{suppressed}}", self.prefix))
            .arg(contact.as_str())
            .arg(at)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let own = [
            "inbox",
            "outbox",
            "session",
            "profile",
            "history",
            "consent",
            "deliveries",
            "window",
            "dead",
            "outbox:head",
            "lease:inbox",
            "lease:outbox",
            "key",
            "key:was",
            "lastcmp",
            "cmp",
        ];
        let shard = shard_of(contact);
        let mut inv = self.erase.prepare_invoke();
        for suffix in own {
            inv.key(self.contact_key(contact, suffix));
        }
        inv.key(self.ready_key(Lane::Inbox, shard))
            .key(self.ready_key(Lane::Outbox, shard))
            .key(self.timers_key(Lane::Inbox, shard))
            .key(self.timers_key(Lane::Outbox, shard))
            .key(self.shard_key(shard, "dead"))
            .key(self.shard_key(shard, "history"))
            .key(self.stats_key(shard, &stats::today()))
            .arg(own.len())
            .arg(contact.as_str())
            .arg(STATS_TTL)
            .arg(own.len())
            .arg(self.shard_key(shard, "cmp:"))
            .arg(CAMPAIGN_TTL_S);
        let _: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        // Their entries in campaigns not dispatched yet (their number,
        // sealed) go too, counted as skipped. (Another slot: its own
        // writes; erasing again after a crash is safe.)
        // Removed by key (O(1) each), never by reading the audience.
        for c in self.active_campaigns().await? {
            let keys = self.audience_keys(&c.id);
            let gone = super::audience::unlist(&mut conn, &keys, contact.as_str()).await?;
            if gone > 0 {
                let counters = self.shard_key(shard, &format!("cmp:{}", c.id));
                let mut pipe = redis::pipe();
                pipe.cmd("HINCRBY")
                    .arg(&counters)
                    .arg("skipped:suppressed")
                    .arg(gone)
                    .ignore();
                pipe.cmd("HINCRBY")
                    .arg(&counters)
                    .arg("dispatched")
                    .arg(gone)
                    .ignore();
                pipe.cmd("EXPIRE")
                    .arg(&counters)
                    .arg(CAMPAIGN_TTL_S)
                    .ignore();
                let () = pipe.query_async(&mut conn).await.map_err(unavailable)?;
            }
        }
        Ok(())
    }

    async fn purge_history(&self, before_ms: u64, limit: usize) -> Result<usize, StoreError> {
        let per_shard: Vec<Vec<String>> = self
            .pipeline(|| {
                let mut pipe = redis::pipe();
                for shard in 0..SHARDS {
                    pipe.cmd("ZRANGE")
                        .arg(self.shard_key(shard, "history"))
                        .arg("-inf")
                        .arg(format!("({before_ms}"))
                        .arg("BYSCORE")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(limit);
                }
                pipe
            })
            .await?;
        let contacts: Vec<ContactKey> = per_shard
            .iter()
            .flatten()
            .filter_map(|m| ContactKey::parse(m))
            .take(limit)
            .collect();
        let mut conn = self.conn.clone();
        for c in &contacts {
            let _: i64 = self
                .purge
                .key(self.contact_key(c, "history"))
                .key(self.shard_key(shard_of(c), "history"))
                .arg(before_ms)
                .arg(c.as_str())
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        Ok(contacts.len())
    }

    async fn append_consent(
        &self,
        contact: &ContactKey,
        change: ConsentChange,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .consent
            .key(self.contact_key(contact, "consent"))
            .key(self.stats_key(shard_of(contact), &stats::today()))
            .arg(json(&change)?)
            .arg(stats::of_consent(&change).unwrap_or(""))
            .arg(STATS_TTL)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn suppressed(&self, contact: &ContactKey) -> Result<Option<u64>, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("HGET")
            .arg(format!("{}{{suppressed}}", self.prefix))
            .arg(contact.as_str())
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn session(&self, contact: &ContactKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_bytes(self.contact_key(contact, "session")).await
    }

    async fn history(
        &self,
        contact: &ContactKey,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.history_range(contact, false, limit).await
    }

    async fn recent_history(
        &self,
        contact: &ContactKey,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut out = self.history_range(contact, true, limit).await?;
        out.reverse();
        Ok(out)
    }

    async fn profile(&self, contact: &ContactKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_bytes(self.contact_key(contact, "profile")).await
    }

    async fn deliveries(&self, contact: &ContactKey) -> Result<Vec<Delivery>, StoreError> {
        let mut conn = self.conn.clone();
        let all: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(self.contact_key(contact, "deliveries"))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut out: Vec<Delivery> = all
            .into_iter()
            .filter(|(k, _)| !k.starts_with("w:"))
            .filter_map(|(_, v)| record_of(&v))
            .collect();
        out.sort_by(|a, b| (a.at, &a.job).cmp(&(b.at, &b.job)));
        Ok(out)
    }

    async fn consent(&self, contact: &ContactKey) -> Result<Vec<ConsentChange>, StoreError> {
        let mut conn = self.conn.clone();
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.contact_key(contact, "consent"))
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(reply
            .ids
            .iter()
            .filter_map(|sid| match sid.map.get("c") {
                Some(Value::BulkString(b)) => serde_json::from_slice(b).ok(),
                _ => None,
            })
            .collect())
    }

    async fn windows(&self, contact: &ContactKey) -> Result<Vec<(String, u64)>, StoreError> {
        let mut conn = self.conn.clone();
        let mut all: Vec<(String, u64)> = redis::cmd("HGETALL")
            .arg(self.contact_key(contact, "window"))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        all.sort();
        Ok(all)
    }

    async fn resolve_contacts(
        &self,
        keys: &[ContactKey],
    ) -> Result<Vec<crate::store::Resolved>, StoreError> {
        self.resolve_links(keys).await
    }

    async fn link_contacts(
        &self,
        links: &[(ContactKey, ContactKey)],
    ) -> Result<Vec<ContactKey>, StoreError> {
        self.add_links(links).await
    }

    async fn aliases(&self, canonical: &ContactKey) -> Result<Vec<ContactKey>, StoreError> {
        self.aliases_of(canonical).await
    }

    async fn unlink(&self, canonical: &ContactKey) -> Result<(), StoreError> {
        self.drop_links(canonical).await
    }
}
