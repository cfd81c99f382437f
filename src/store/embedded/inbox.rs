//! The embedded backend: the inbox role (see [`crate::store::InboxStore`]).

use super::*;
use crate::store::{ContactStore, InboxStore};

#[async_trait]
impl InboxStore for EmbeddedStore {
    async fn append_linked(
        &self,
        entries: Vec<InboxEntry>,
        links: &[(ContactKey, ContactKey)],
    ) -> Result<Vec<Appended>, StoreError> {
        if !links.is_empty() {
            self.link_contacts(links).await?;
        }
        self.append(entries).await
    }

    async fn append(&self, entries: Vec<InboxEntry>) -> Result<Vec<Appended>, StoreError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(Job::Append(entries, tx))
            .map_err(|_| StoreError::Unavailable("store writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("store writer stopped".into()))?
    }

    async fn read(&self, queue: &Queue, limit: usize) -> Result<Vec<StoredEntry>, StoreError> {
        let name = queue.name();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let table = txn.open_table(INBOX).map_err(corrupt)?;
            let range = table
                .range((name.as_str(), 0)..=(name.as_str(), u64::MAX))
                .map_err(corrupt)?;
            let mut out = Vec::new();
            for item in range.take(limit) {
                let (k, v) = item.map_err(corrupt)?;
                out.push(StoredEntry {
                    id: format!("{:020}", k.value().1),
                    sealed: v.value().to_vec(),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn commit(&self, claim: &Claim, commit: Commit) -> Result<Committed, StoreError> {
        let leases = self.leases.clone();
        let c = claim.clone();
        let now_ms = crate::clock::now_ms();
        let result = self
            .write(move |txn| {
                // Checked on the writer thread, in the transaction's turn.
                if !Self::holds(&leases, &c) {
                    return Ok(Committed::LeaseLost);
                }
                let key = c.contact.as_str();
                // Sealed under a data key that is no longer the contact's
                // (erased meanwhile): nothing is written.
                if let Some(wrapped) = &c.data_key {
                    let Some((until, current)) = key_in_force(txn, key, wrapped)? else {
                        return Ok(Committed::LeaseLost);
                    };
                    let keep = now_secs() + commit.profile_ttl.as_secs() + 2 * 86_400;
                    txn.open_table(DATA_KEYS)
                        .map_err(corrupt)?
                        .insert(key, (until.max(keep), current.as_slice()))
                        .map_err(corrupt)?;
                }
                let inbox_q = Queue::Contact(c.contact.clone()).name();
                let outbox_q = Queue::Outbox(c.contact.clone()).name();
                let mut inbox = txn.open_table(INBOX).map_err(corrupt)?;
                for id in &commit.acked {
                    inbox
                        .remove((inbox_q.as_str(), seq_of(id)?))
                        .map_err(corrupt)?;
                }
                write_session(txn, key, &commit)?;
                if !commit.outbox.is_empty() {
                    let mut seq = txn.open_table(SEQ).map_err(corrupt)?;
                    let mut n = seq
                        .get(outbox_q.as_str())
                        .map_err(corrupt)?
                        .map(|v| v.value())
                        .unwrap_or(0);
                    for job in &commit.outbox {
                        inbox
                            .insert((outbox_q.as_str(), n), job.as_slice())
                            .map_err(corrupt)?;
                        n += 1;
                    }
                    seq.insert(outbox_q.as_str(), n).map_err(corrupt)?;
                    let mut ready = txn.open_table(OUTBOX_READY).map_err(corrupt)?;
                    if ready.get(key).map_err(corrupt)?.is_none() {
                        ready.insert(key, now_ms).map_err(corrupt)?;
                    }
                }
                set_timer(txn, TIMERS, TIMER_OF, key, commit.wake_at)?;
                write_history(txn, key, &commit, now_ms)?;
                for d in &commit.deliveries {
                    merge_delivery(txn, key, d)?;
                }
                append_consent(txn, key, &commit.consent)?;
                count(
                    txn,
                    &stats::with_consent(&commit.stats, commit.consent.iter()),
                )?;
                if commit
                    .consent
                    .iter()
                    .any(|c| stats::of_consent(c).is_some_and(|n| stats::is_opt_out(&n)))
                {
                    let mut last = txn.open_table(LAST_CAMPAIGN).map_err(corrupt)?;
                    let mut counts = txn.open_table(CAMPAIGN_COUNTS).map_err(corrupt)?;
                    attribute_opt_out(&mut last, &mut counts, key, now_secs()).map_err(corrupt)?;
                }
                let left = inbox
                    .range((inbox_q.as_str(), 0)..=(inbox_q.as_str(), u64::MAX))
                    .map_err(corrupt)?
                    .count() as u64;
                if left == 0 {
                    txn.open_table(READY)
                        .map_err(corrupt)?
                        .remove(key)
                        .map_err(corrupt)?;
                }
                Ok(Committed::Done { inbox_left: left })
            })
            .await;
        Self::unlease(&self.leases, claim);
        result
    }
}

/// Writes (or deletes) the session a commit leaves.
fn write_session(
    txn: &redb::WriteTransaction,
    key: &str,
    commit: &Commit,
) -> Result<(), StoreError> {
    let mut sessions = txn.open_table(SESSIONS).map_err(corrupt)?;
    let mut session_expiry = txn.open_table(SESSION_EXPIRY).map_err(corrupt)?;
    match &commit.session {
        Some(bytes) => {
            sessions.insert(key, bytes.as_slice()).map_err(corrupt)?;
            session_expiry
                .insert(key, now_secs() + commit.session_ttl.as_secs().max(1))
                .map_err(corrupt)?;
        }
        None => {
            sessions.remove(key).map_err(corrupt)?;
            session_expiry.remove(key).map_err(corrupt)?;
        }
    }
    Ok(())
}

/// Appends a commit's history entries, and writes its profile and window.
fn write_history(
    txn: &redb::WriteTransaction,
    key: &str,
    commit: &Commit,
    now_ms: u64,
) -> Result<(), StoreError> {
    if !commit.history.is_empty() {
        let q = format!("h:{key}");
        let mut seq = txn.open_table(SEQ).map_err(corrupt)?;
        let mut n = seq
            .get(q.as_str())
            .map_err(corrupt)?
            .map(|v| v.value())
            .unwrap_or(0);
        let mut history = txn.open_table(HISTORY).map_err(corrupt)?;
        let mut age = txn.open_table(HISTORY_AGE).map_err(corrupt)?;
        for item in &commit.history {
            history
                .insert((q.as_str(), n), (now_ms, item.as_slice()))
                .map_err(corrupt)?;
            age.insert((now_ms, q.as_str(), n), ()).map_err(corrupt)?;
            n += 1;
        }
        seq.insert(q.as_str(), n).map_err(corrupt)?;
    }
    if let Some(profile) = &commit.profile {
        let until = now_ms / 1000 + commit.profile_ttl.as_secs().max(1);
        txn.open_table(PROFILES)
            .map_err(corrupt)?
            .insert(key, (until, profile.as_slice()))
            .map_err(corrupt)?;
    }
    if let Some((number, at)) = &commit.window {
        let mut windows = txn.open_table(WINDOWS).map_err(corrupt)?;
        let cur = windows
            .get((key, number.as_str()))
            .map_err(corrupt)?
            .map(|v| v.value())
            .unwrap_or(0);
        if *at > cur {
            windows
                .insert((key, number.as_str()), *at)
                .map_err(corrupt)?;
        }
    }
    Ok(())
}
