//! The Redis backend: the lanes role (see [`crate::store::LaneStore`]).

use super::scripts::{
    ClaimArgs, ClaimKeys, Keys, ReleaseArgs, ReleaseKeys, RenewArgs, RenewKeys, SweepArgs,
    SweepKeys,
};
use super::*;
use crate::store::LaneStore;

#[async_trait]
impl LaneStore for RedisStore {
    async fn ready_contacts(
        &self,
        lane: Lane,
        limit: usize,
    ) -> Result<Vec<ContactKey>, StoreError> {
        // A random sample of each shard, not the oldest: every instance
        // sweeping the same few contacts would only collide on them.
        let per_shard: Vec<Vec<String>> = self
            .pipeline(|| {
                let mut pipe = redis::pipe();
                for shard in 0..SHARDS {
                    pipe.cmd("ZRANDMEMBER")
                        .arg(self.ready_key(lane, shard))
                        .arg(limit);
                }
                pipe
            })
            .await?;
        let mut out: Vec<ContactKey> = per_shard
            .iter()
            .flatten()
            .filter_map(|m| ContactKey::parse(m))
            .collect();
        if out.len() > limit {
            // Fair between shards: a random subset, not the first shards'.
            let mut rng = rand::rng();
            rand::seq::SliceRandom::shuffle(&mut out[..], &mut rng);
            out.truncate(limit);
        }
        Ok(out)
    }

    async fn sweep(
        &self,
        lane: Lane,
        now: u64,
        limit: usize,
    ) -> Result<(Vec<ContactKey>, Vec<ContactKey>), StoreError> {
        // One command per shard for both sets.
        let per_shard: Vec<(Vec<String>, Vec<String>)> = self
            .pipeline(|| {
                let mut pipe = redis::pipe();
                for shard in 0..SHARDS {
                    let keys = SweepKeys {
                        ready: self.ready_key(lane, shard),
                        timers: self.timers_key(lane, shard),
                    };
                    let args = SweepArgs { limit, now };
                    args.args(Self::evalsha(&mut pipe, &self.sweep, &keys.keys()));
                }
                pipe
            })
            .await?;
        let mut ready = Vec::new();
        let mut due = Vec::new();
        for (r, d) in per_shard {
            ready.extend(r.iter().filter_map(|m| ContactKey::parse(m)));
            due.extend(d.iter().filter_map(|m| ContactKey::parse(m)));
        }
        let mut rng = rand::rng();
        for list in [&mut ready, &mut due] {
            if list.len() > limit {
                rand::seq::SliceRandom::shuffle(&mut list[..], &mut rng);
                list.truncate(limit);
            }
        }
        Ok((ready, due))
    }

    async fn claim(
        &self,
        lane: Lane,
        contact: &ContactKey,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Option<Claim>, StoreError> {
        let mut conn = self.conn.clone();
        let queue = match lane {
            Lane::Inbox => Queue::Contact(contact.clone()),
            Lane::Outbox => Queue::Outbox(contact.clone()),
        };
        let keys = ClaimKeys {
            lease: self.lease_key(lane, contact),
            stream: self.stream_key(&queue),
            state: match lane {
                Lane::Inbox => self.contact_key(contact, "session"),
                Lane::Outbox => self.contact_key(contact, "outbox:head"),
            },
            data_key: self.contact_key(contact, "key"),
            profile: (lane == Lane::Inbox).then(|| self.contact_key(contact, "profile")),
        };
        let args = ClaimArgs {
            token: owner,
            lease_ms: lease.as_millis() as u64,
            limit,
        };
        let mut invocation = self.claim.prepare_invoke();
        keys.add_to(&mut invocation);
        args.args(&mut invocation);
        let reply: Value = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut parts = match reply {
            Value::Nil => return Ok(None),
            Value::Array(parts) => parts.into_iter(),
            other => return Err(StoreError::Corrupt(format!("claim answered {other:?}"))),
        };
        let range: redis::streams::StreamRangeReply = match parts.next() {
            Some(v) => {
                redis::from_redis_value(v).map_err(|e| StoreError::Corrupt(e.to_string()))?
            }
            None => return Err(StoreError::Corrupt("claim answered nothing".into())),
        };
        let mut bytes = || match parts.next() {
            Some(Value::BulkString(b)) => Some(b),
            _ => None,
        };
        let extra = bytes();
        let data_key = bytes();
        let profile = bytes();
        let entries = entries_of(range)?;
        let read = crate::store::lanes::ClaimRead {
            entries,
            state: extra,
            profile,
            data_key,
        };
        Ok(Some(Claim::of(lane, contact, owner, read)))
    }

    async fn due_timers(
        &self,
        lane: Lane,
        now: u64,
        limit: usize,
    ) -> Result<Vec<ContactKey>, StoreError> {
        let per_shard: Vec<Vec<(String, f64)>> = self
            .pipeline(|| {
                let mut pipe = redis::pipe();
                for shard in 0..SHARDS {
                    pipe.cmd("ZRANGE")
                        .arg(self.timers_key(lane, shard))
                        .arg("-inf")
                        .arg(now)
                        .arg("BYSCORE")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(limit)
                        .arg("WITHSCORES");
                }
                pipe
            })
            .await?;
        Ok(merge_scored(per_shard, limit))
    }

    async fn backlog(&self, lane: Lane) -> Result<(u64, Option<u64>), StoreError> {
        let replies: Vec<(u64, Vec<(String, f64)>)> = self
            .pipeline(|| {
                let mut pipe = redis::pipe();
                for shard in 0..SHARDS {
                    let key = self.ready_key(lane, shard);
                    pipe.cmd("ZCARD").arg(&key);
                    pipe.cmd("ZRANGE").arg(&key).arg(0).arg(0).arg("WITHSCORES");
                }
                pipe
            })
            .await
            .map(|flat: Vec<Value>| {
                flat.chunks(2)
                    .filter_map(|pair| {
                        redis::FromRedisValue::from_redis_value(Value::Array(pair.to_vec())).ok()
                    })
                    .collect()
            })?;
        // Outboxes that wait (backoff, rate, a paused number) are pending
        // too: they left the ready set for the due set.
        let waiting: u64 = if lane == Lane::Outbox {
            self.pipeline(|| {
                let mut pipe = redis::pipe();
                for shard in 0..SHARDS {
                    pipe.cmd("ZCARD").arg(self.timers_key(Lane::Outbox, shard));
                }
                pipe
            })
            .await
            .map(|n: Vec<u64>| n.iter().sum())?
        } else {
            0
        };
        let count = replies.iter().map(|(n, _)| n).sum::<u64>() + waiting;
        let oldest = replies
            .iter()
            .flat_map(|(_, first)| first.iter().map(|(_, score)| *score as u64))
            .min();
        Ok((count, oldest))
    }

    async fn renew(
        &self,
        held: &[crate::store::lease::Held],
        lease: Duration,
    ) -> Result<Vec<bool>, StoreError> {
        // One script per shard (a shard's keys share a slot), all in one
        // round trip.
        let mut by_shard: std::collections::BTreeMap<u16, Vec<usize>> = Default::default();
        for (i, h) in held.iter().enumerate() {
            by_shard.entry(shard_of(&h.contact)).or_default().push(i);
        }
        if by_shard.is_empty() {
            return Ok(Vec::new());
        }
        let ms = lease.as_millis().max(1) as u64;
        let answers: Vec<Vec<i64>> = self
            .pipeline(|| {
                let mut pipe = redis::pipe();
                for at in by_shard.values() {
                    let keys = RenewKeys {
                        leases: at
                            .iter()
                            .map(|&i| self.lease_key(held[i].lane, &held[i].contact))
                            .collect(),
                    };
                    let args = RenewArgs {
                        lease_ms: ms,
                        tokens: at.iter().map(|&i| held[i].owner.as_str()).collect(),
                    };
                    args.args(Self::evalsha(&mut pipe, &self.renew, &keys.keys()));
                }
                pipe
            })
            .await?;
        let mut out = vec![false; held.len()];
        for (at, kept) in by_shard.values().zip(answers) {
            for (&i, k) in at.iter().zip(kept) {
                out[i] = k == 1;
            }
        }
        Ok(out)
    }

    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let c = &claim.contact;
        let shard = shard_of(c);
        let keys = ReleaseKeys {
            lease: self.lease_key(claim.lane, c),
            outbox: self.contact_key(c, "outbox"),
            outbox_ready: self.ready_key(Lane::Outbox, shard),
            due: self.timers_key(Lane::Outbox, shard),
        };
        let args = ReleaseArgs {
            token: &claim.owner,
            contact: c.as_str(),
            outbox_lane: claim.lane == Lane::Outbox,
        };
        let mut inv = self.release.prepare_invoke();
        keys.add_to(&mut inv);
        args.args(&mut inv);
        let _: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }
}
