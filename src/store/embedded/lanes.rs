//! The embedded backend: the lanes role (see [`crate::store::LaneStore`]).

use super::*;
use crate::store::{InboxStore, LaneStore};

#[async_trait]
impl LaneStore for EmbeddedStore {
    async fn ready_contacts(
        &self,
        lane: Lane,
        limit: usize,
    ) -> Result<Vec<ContactKey>, StoreError> {
        // A random sample in O(limit): contact keys are uniformly spread
        // hex pseudonyms, so reading on from a random key and wrapping
        // around is fair to every contact (a full scan sorted by arrival
        // cost every poll of every worker and sender the whole table).
        let start = hex::encode(rand::random::<[u8; 16]>());
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let table = txn.open_table(ready_table(lane)).map_err(corrupt)?;
            let mut out = Vec::with_capacity(limit);
            for item in table.range(start.as_str()..).map_err(corrupt)?.take(limit) {
                let (k, _) = item.map_err(corrupt)?;
                out.extend(ContactKey::parse(k.value()));
            }
            if out.len() < limit {
                let rest = limit - out.len();
                for item in table.range(..start.as_str()).map_err(corrupt)?.take(rest) {
                    let (k, _) = item.map_err(corrupt)?;
                    out.extend(ContactKey::parse(k.value()));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn renew(
        &self,
        held: &[crate::store::lease::Held],
        lease: Duration,
    ) -> Result<Vec<bool>, StoreError> {
        let mut map = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        Ok(held
            .iter()
            .map(|h| {
                let key = (h.lane, h.contact.as_str().to_owned());
                match map.get_mut(&key) {
                    Some((owner, until)) if *owner == h.owner && *until > now => {
                        *until = now + lease;
                        true
                    }
                    _ => false,
                }
            })
            .collect())
    }

    async fn claim(
        &self,
        lane: Lane,
        contact: &ContactKey,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Option<Claim>, StoreError> {
        {
            let mut map = self.leases.lock().unwrap_or_else(|p| p.into_inner());
            let key = (lane, contact.as_str().to_owned());
            let now = Instant::now();
            if map.get(&key).is_some_and(|(_, until)| *until > now) {
                return Ok(None);
            }
            map.insert(key, (owner.to_owned(), now + lease));
        }
        let queue = match lane {
            Lane::Inbox => Queue::Contact(contact.clone()),
            Lane::Outbox => Queue::Outbox(contact.clone()),
        };
        let entries = self.read(&queue, limit).await?;
        let key = contact.as_str().to_owned();
        let (state, profile, data_key) = self
            .blocking(move |db| {
                let txn = db.begin_read().map_err(corrupt)?;
                let t = txn
                    .open_table(match lane {
                        Lane::Inbox => SESSIONS,
                        Lane::Outbox => OUTBOX_HEAD,
                    })
                    .map_err(corrupt)?;
                let state = t
                    .get(key.as_str())
                    .map_err(corrupt)?
                    .map(|v| v.value().to_vec());
                let profile = match lane {
                    Lane::Inbox => read_profile(&txn, &key)?,
                    Lane::Outbox => None,
                };
                Ok((state, profile, read_data_key(&txn, &key)?))
            })
            .await?;
        let read = crate::store::lanes::ClaimRead {
            entries,
            state,
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
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let t = txn
                .open_table(match lane {
                    Lane::Inbox => TIMERS,
                    Lane::Outbox => OUTBOX_DUE,
                })
                .map_err(corrupt)?;
            let mut out = Vec::new();
            for item in t
                .range((0, "")..(now + 1, ""))
                .map_err(corrupt)?
                .take(limit)
            {
                let (k, _) = item.map_err(corrupt)?;
                if let Some(c) = ContactKey::parse(k.value().1) {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn backlog(&self, lane: Lane) -> Result<(u64, Option<u64>), StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let table = txn.open_table(ready_table(lane)).map_err(corrupt)?;
            let mut count = 0;
            let mut oldest: Option<u64> = None;
            for item in table.iter().map_err(corrupt)? {
                let (_, since) = item.map_err(corrupt)?;
                count += 1;
                oldest = Some(oldest.map_or(since.value(), |o| o.min(since.value())));
            }
            if lane == Lane::Outbox {
                // Outboxes that wait (backoff, rate, a paused number).
                count += txn
                    .open_table(OUTBOX_DUE_OF)
                    .map_err(corrupt)?
                    .len()
                    .map_err(corrupt)?;
            }
            Ok((count, oldest))
        })
        .await
    }

    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        if claim.lane == Lane::Outbox {
            let c = claim.clone();
            self.write(move |txn| Self::unready_outbox(txn, &c)).await?;
        }
        Self::unlease(&self.leases, claim);
        Ok(())
    }
}
