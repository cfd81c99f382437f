//! The Redis backend: the outbox role (see [`crate::store::OutboxStore`]).

use super::*;
use crate::store::OutboxStore;

#[async_trait]
impl OutboxStore for RedisStore {
    async fn finish(&self, claim: &Claim, id: &str, finish: Finish) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let c = &claim.contact;
        let shard = shard_of(c);
        let mut inv = self.finish.prepare_invoke();
        inv.key(self.lease_key(Lane::Outbox, c))
            .key(self.contact_key(c, "outbox"))
            .key(self.contact_key(c, "outbox:head"))
            .key(self.contact_key(c, "deliveries"))
            .key(self.contact_key(c, "dead"))
            .key(self.shard_key(shard, "dead"))
            .key(self.contact_key(c, "consent"))
            .key(self.ready_key(Lane::Outbox, shard))
            .key(self.timers_key(Lane::Outbox, shard))
            .key(self.stats_key(shard, &stats::today()))
            .key(self.contact_key(c, "key"))
            .key(self.shard_key(shard, "cmp:"))
            .key(self.contact_key(c, "cmp"))
            .key(self.contact_key(c, "lastcmp"))
            .arg(&claim.owner)
            .arg(id);
        for a in record_args(&finish.record)? {
            inv.arg(a);
        }
        let consent = match &finish.consent {
            Some(change) => json(change)?,
            None => String::new(),
        };
        inv.arg(finish.dead_letter.as_deref().unwrap_or(b""))
            .arg(crate::clock::now_secs())
            .arg(c.as_str())
            .arg(consent)
            .arg(if finish.release { "1" } else { "" })
            .arg(finish.also.len());
        for other in &finish.also {
            inv.arg(other);
        }
        let counts = stats::with_consent(&finish.stats, finish.consent.iter());
        inv.arg(counts.len()).arg(STATS_TTL);
        for (name, n) in &counts {
            inv.arg(name).arg(*n);
        }
        inv.arg(CAMPAIGN_TTL_S)
            .arg(claim.data_key.as_deref().unwrap_or(b""));
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
        let _: i64 = self
            .defer
            .key(self.lease_key(Lane::Outbox, c))
            .key(self.contact_key(c, "outbox:head"))
            .key(self.timers_key(Lane::Outbox, shard))
            .key(self.ready_key(Lane::Outbox, shard))
            .arg(&claim.owner)
            .arg(if head.is_some() { "1" } else { "0" })
            .arg(head.as_deref().unwrap_or(b""))
            .arg(until)
            .arg(c.as_str())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn set_head(&self, claim: &Claim, head: Vec<u8>) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let c = &claim.contact;
        let held: i64 = self
            .set_head
            .key(self.lease_key(Lane::Outbox, c))
            .key(self.contact_key(c, "outbox:head"))
            .arg(&claim.owner)
            .arg(&head[..])
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(held == 1)
    }

    async fn wake_deferred(&self) -> Result<(), StoreError> {
        let _: Vec<i64> = self
            .pipeline(|| {
                let mut pipe = redis::pipe();
                for shard in 0..SHARDS {
                    Self::evalsha(
                        &mut pipe,
                        &self.wake,
                        &[self.timers_key(Lane::Outbox, shard)],
                    );
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
