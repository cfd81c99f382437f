//! The Redis backend: the outbox role (see [`crate::store::OutboxStore`]).

use super::scripts::{
    DeferArgs, DeferKeys, FinishArgs, FinishKeys, Keys, SetHeadArgs, SetHeadKeys, WakeKeys,
};
use super::*;
use crate::store::OutboxStore;

#[async_trait]
impl OutboxStore for RedisStore {
    async fn finish(&self, claim: &Claim, id: &str, finish: Finish) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let c = &claim.contact;
        let shard = shard_of(c);
        let keys = FinishKeys {
            lease: self.lease_key(Lane::Outbox, c),
            outbox: self.contact_key(c, "outbox"),
            head: self.contact_key(c, "outbox:head"),
            deliveries: self.contact_key(c, "deliveries"),
            dead: self.contact_key(c, "dead"),
            dead_index: self.shard_key(shard, "dead"),
            consent: self.contact_key(c, "consent"),
            outbox_ready: self.ready_key(Lane::Outbox, shard),
            due: self.timers_key(Lane::Outbox, shard),
            stats: self.stats_key(shard, &stats::today()),
            data_key: self.contact_key(c, "key"),
            campaign_prefix: self.shard_key(shard, "cmp:"),
            campaigns: self.contact_key(c, "cmp"),
            last_campaign: self.contact_key(c, "lastcmp"),
        };
        let counts = stats::with_consent(&finish.stats, finish.consent.iter());
        let args = FinishArgs {
            token: &claim.owner,
            entry: id,
            record: record_args(&finish.record)?,
            dead_letter: finish.dead_letter.as_deref().unwrap_or(b""),
            now: crate::clock::now_secs(),
            contact: c.as_str(),
            consent: finish.consent.as_ref().map_or(Ok(String::new()), json)?,
            release: finish.release,
            also: &finish.also,
            counts: &counts,
            stats_ttl: STATS_TTL,
            campaign_ttl: CAMPAIGN_TTL_S,
            data_key: claim.data_key.as_deref().unwrap_or(b""),
        };
        let mut inv = self.finish.prepare_invoke();
        keys.add_to(&mut inv);
        args.args(&mut inv);
        let held: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(held == 1)
    }

    async fn defer(
        &self,
        claim: &Claim,
        head: Option<Vec<u8>>,
        until: u64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let c = &claim.contact;
        let shard = shard_of(c);
        let keys = DeferKeys {
            lease: self.lease_key(Lane::Outbox, c),
            head: self.contact_key(c, "outbox:head"),
            due: self.timers_key(Lane::Outbox, shard),
            outbox_ready: self.ready_key(Lane::Outbox, shard),
        };
        let args = DeferArgs {
            token: &claim.owner,
            head: head.as_deref(),
            until_ms: until,
            contact: c.as_str(),
        };
        let mut inv = self.defer.prepare_invoke();
        keys.add_to(&mut inv);
        args.args(&mut inv);
        let _: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn set_head(&self, claim: &Claim, head: Vec<u8>) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let c = &claim.contact;
        let keys = SetHeadKeys {
            lease: self.lease_key(Lane::Outbox, c),
            head: self.contact_key(c, "outbox:head"),
        };
        let args = SetHeadArgs {
            token: &claim.owner,
            head: &head,
        };
        let mut inv = self.set_head.prepare_invoke();
        keys.add_to(&mut inv);
        args.args(&mut inv);
        let held: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(held == 1)
    }

    async fn wake_deferred(&self) -> Result<(), StoreError> {
        let _: Vec<i64> = self
            .pipeline(|| {
                let mut pipe = redis::pipe();
                for shard in 0..SHARDS {
                    let keys = WakeKeys {
                        due: self.timers_key(Lane::Outbox, shard),
                    };
                    Self::evalsha(&mut pipe, &self.wake, &keys.keys());
                }
                pipe
            })
            .await?;
        Ok(())
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let per_shard: Vec<Vec<(String, f64)>> = self
            .pipeline(|| {
                let mut pipe = redis::pipe();
                for shard in 0..SHARDS {
                    pipe.cmd("ZRANGE")
                        .arg(self.shard_key(shard, "dead"))
                        .arg(0)
                        .arg(limit.saturating_sub(1) as i64)
                        .arg("WITHSCORES");
                }
                pipe
            })
            .await?;
        let mut conn = self.conn.clone();
        let mut out = Vec::new();
        for contact in merge_scored(per_shard, limit) {
            let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg(self.contact_key(&contact, "dead"))
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(limit - out.len())
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            for entry in entries_of(reply)? {
                out.push(DeadLetter {
                    contact: contact.clone(),
                    entry,
                });
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}
