//! The Redis backend: the contacts role (see [`crate::store::ContactStore`]).

use super::scripts::{ConsentArgs, ConsentKeys, EraseArgs, EraseKeys, Keys, PurgeArgs, PurgeKeys};
use super::*;
use crate::store::{CampaignStore, ContactStore};

#[async_trait]
impl ContactStore for RedisStore {
    async fn erase(
        &self,
        contact: &ContactKey,
        business: &BusinessId,
        at: u64,
    ) -> Result<(), StoreError> {
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
        let shard = shard_of(contact);
        let own = |suffix: &str| self.contact_key(contact, suffix);
        let keys = EraseKeys {
            inbox: own("inbox"),
            outbox: own("outbox"),
            session: own("session"),
            profile: own("profile"),
            history: own("history"),
            consent: own("consent"),
            deliveries: own("deliveries"),
            window: own("window"),
            dead: own("dead"),
            head: own("outbox:head"),
            inbox_lease: self.lease_key(Lane::Inbox, contact),
            outbox_lease: self.lease_key(Lane::Outbox, contact),
            data_key: own("key"),
            data_key_was: own("key:was"),
            last_campaign: own("lastcmp"),
            campaigns: own("cmp"),
            inbox_ready: self.ready_key(Lane::Inbox, shard),
            outbox_ready: self.ready_key(Lane::Outbox, shard),
            timers: self.timers_key(Lane::Inbox, shard),
            due: self.timers_key(Lane::Outbox, shard),
            dead_index: self.shard_key(shard, "dead"),
            history_index: self.shard_key(shard, "history"),
            stats: self.stats_key(shard, &stats::today()),
        };
        let counter = stats::scoped(Some(business), stats::ERASURES);
        let args = EraseArgs {
            contact: contact.as_str(),
            counter: &counter,
            stats_ttl: STATS_TTL,
            campaign_prefix: self.shard_key(shard, "cmp:"),
            campaign_ttl: CAMPAIGN_TTL_S,
        };
        let mut inv = self.erase.prepare_invoke();
        keys.add_to(&mut inv);
        args.args(&mut inv);
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
            let keys = PurgeKeys {
                history: self.contact_key(c, "history"),
                history_index: self.shard_key(shard_of(c), "history"),
                held: self.contact_key(c, "held"),
            };
            let args = PurgeArgs {
                cutoff_ms: before_ms,
                contact: c.as_str(),
            };
            let mut inv = self.purge.prepare_invoke();
            keys.add_to(&mut inv);
            args.args(&mut inv);
            let _: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        }
        Ok(contacts.len())
    }

    async fn append_consent(
        &self,
        contact: &ContactKey,
        change: ConsentChange,
    ) -> Result<(), StoreError> {
        let keys = ConsentKeys {
            consent: self.contact_key(contact, "consent"),
            stats: self.stats_key(shard_of(contact), &stats::today()),
        };
        let counter = stats::of_consent(&change).unwrap_or_default();
        let args = ConsentArgs {
            entry: json(&change)?,
            counter: &counter,
            stats_ttl: STATS_TTL,
        };
        let mut inv = self.consent.prepare_invoke();
        keys.add_to(&mut inv);
        args.args(&mut inv);
        let mut conn = self.conn.clone();
        let _: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
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
