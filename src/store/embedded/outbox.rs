//! The embedded backend: the outbox role (see [`crate::store::OutboxStore`]).

use super::*;
use crate::store::OutboxStore;

#[async_trait]
impl OutboxStore for EmbeddedStore {
    async fn finish(&self, claim: &Claim, id: &str, finish: Finish) -> Result<bool, StoreError> {
        let leases = self.leases.clone();
        let c = claim.clone();
        let mut seqs = vec![seq_of(id)?];
        for other in &finish.also {
            seqs.push(seq_of(other)?);
        }
        let held = self
            .write(move |txn| {
                let key = c.contact.as_str();
                if let Some(wrapped) = &c.data_key
                    && key_in_force(txn, key, wrapped)?.is_none()
                {
                    // The contact was erased meanwhile: nothing to write.
                    return Ok(false);
                }
                let q = Queue::Outbox(c.contact.clone()).name();
                {
                    let mut inbox = txn.open_table(INBOX).map_err(corrupt)?;
                    for seq in &seqs {
                        inbox.remove((q.as_str(), *seq)).map_err(corrupt)?;
                    }
                }
                txn.open_table(OUTBOX_HEAD)
                    .map_err(corrupt)?
                    .remove(key)
                    .map_err(corrupt)?;
                merge_delivery(txn, key, &finish.record)?;
                append_consent(txn, key, finish.consent.as_slice())?;
                count(
                    txn,
                    &stats::with_consent(&finish.stats, finish.consent.iter()),
                )?;
                if let Some(letter) = &finish.dead_letter {
                    let dq = format!("d:{key}");
                    let mut seqs = txn.open_table(SEQ).map_err(corrupt)?;
                    let n = seqs
                        .get(dq.as_str())
                        .map_err(corrupt)?
                        .map(|v| v.value())
                        .unwrap_or(0);
                    seqs.insert(dq.as_str(), n + 1).map_err(corrupt)?;
                    txn.open_table(DEAD)
                        .map_err(corrupt)?
                        .insert((dq.as_str(), n), letter.as_slice())
                        .map_err(corrupt)?;
                    txn.open_table(DEAD_INDEX)
                        .map_err(corrupt)?
                        .insert(key, now_secs())
                        .map_err(corrupt)?;
                }
                let held = Self::holds(&leases, &c);
                if held && finish.release {
                    Self::unready_outbox(txn, &c)?;
                }
                Ok(held)
            })
            .await?;
        if held && finish.release {
            Self::unlease(&self.leases, claim);
        }
        Ok(held)
    }

    async fn defer(
        &self,
        claim: &Claim,
        head: Option<Vec<u8>>,
        until: u64,
    ) -> Result<(), StoreError> {
        let leases = self.leases.clone();
        let c = claim.clone();
        self.write(move |txn| {
            if !Self::holds(&leases, &c) {
                return Ok(());
            }
            let key = c.contact.as_str();
            if let Some(h) = &head {
                txn.open_table(OUTBOX_HEAD)
                    .map_err(corrupt)?
                    .insert(key, h.as_slice())
                    .map_err(corrupt)?;
            }
            set_timer(txn, OUTBOX_DUE, OUTBOX_DUE_OF, key, Some(until))?;
            txn.open_table(OUTBOX_READY)
                .map_err(corrupt)?
                .remove(key)
                .map_err(corrupt)?;
            Ok(())
        })
        .await?;
        Self::unlease(&self.leases, claim);
        Ok(())
    }

    async fn set_head(&self, claim: &Claim, head: Vec<u8>) -> Result<bool, StoreError> {
        let leases = self.leases.clone();
        let c = claim.clone();
        self.write(move |txn| {
            // Checked on the writer thread, in the transaction's turn.
            if !Self::holds(&leases, &c) {
                return Ok(false);
            }
            txn.open_table(OUTBOX_HEAD)
                .map_err(corrupt)?
                .insert(c.contact.as_str(), head.as_slice())
                .map_err(corrupt)?;
            Ok(true)
        })
        .await
    }

    async fn wake_deferred(&self) -> Result<(), StoreError> {
        self.write(move |txn| {
            let mut all = Vec::new();
            {
                let of = txn.open_table(OUTBOX_DUE_OF).map_err(corrupt)?;
                for item in of.iter().map_err(corrupt)? {
                    let (k, _) = item.map_err(corrupt)?;
                    all.push(k.value().to_owned());
                }
            }
            for key in all {
                set_timer(txn, OUTBOX_DUE, OUTBOX_DUE_OF, &key, Some(0))?;
            }
            Ok(())
        })
        .await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let index = txn.open_table(DEAD_INDEX).map_err(corrupt)?;
            let dead = txn.open_table(DEAD).map_err(corrupt)?;
            let mut contacts = Vec::new();
            for item in index.iter().map_err(corrupt)? {
                let (k, v) = item.map_err(corrupt)?;
                contacts.push((v.value(), k.value().to_owned()));
            }
            contacts.sort();
            let mut out = Vec::new();
            for (_, key) in contacts {
                let Some(contact) = ContactKey::parse(&key) else {
                    continue;
                };
                let dq = format!("d:{key}");
                for item in dead
                    .range((dq.as_str(), 0)..=(dq.as_str(), u64::MAX))
                    .map_err(corrupt)?
                    .take(limit - out.len())
                {
                    let (k, v) = item.map_err(corrupt)?;
                    out.push(DeadLetter {
                        contact: contact.clone(),
                        entry: StoredEntry {
                            id: format!("{:020}", k.value().1),
                            sealed: v.value().to_vec(),
                        },
                    });
                }
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }
}
