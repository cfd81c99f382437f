//! The embedded backend's single writer: one thread takes the writes of
//! every caller and commits them in groups (one transaction, one fsync);
//! the inbox appends are applied here.

use super::*;

pub(super) fn writer_loop(db: &Database, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut appends = Vec::new();
        let mut others = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Append(entries, reply) => appends.push((entries, reply)),
                Job::Ping(reply) => {
                    let _ = reply.send(());
                }
                Job::Other(work) => others.push(work),
            }
            if appends.len() + others.len() < MAX_GROUP {
                next = rx.try_recv().ok();
            }
        }
        if appends.is_empty() && others.is_empty() {
            continue;
        }
        // One transaction, one fsync, for everything gathered.
        let batches: Vec<&[InboxEntry]> = appends.iter().map(|(e, _)| e.as_slice()).collect();
        let mut finishers = Vec::with_capacity(others.len());
        let outcome = db.begin_write().map_err(redb::Error::from).and_then(|txn| {
            let results = apply_appends(&txn, &batches, now_secs())?;
            let mut all_ok = true;
            for work in others {
                let (ok, finish) = work(&txn);
                all_ok &= ok;
                finishers.push(finish);
            }
            if all_ok {
                txn.commit()?;
                Ok(results)
            } else {
                // A failed piece of work must not leave half its writes.
                Err(redb::Error::Corrupted(
                    "a write in the group failed; abandoned".into(),
                ))
            }
        });
        let committed = outcome.is_ok();
        match outcome {
            Ok(results) => {
                for ((_, reply), result) in appends.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(e) => {
                for (_, reply) in appends {
                    let _ = reply.send(Err(StoreError::Unavailable(e.to_string())));
                }
            }
        }
        for finish in finishers {
            finish(committed);
        }
    }
}

#[cfg(test)]
fn write_group(
    db: &Database,
    batches: &[&[InboxEntry]],
    now: u64,
) -> Result<Vec<Vec<Appended>>, redb::Error> {
    let txn = db.begin_write()?;
    let results = apply_appends(&txn, batches, now)?;
    txn.commit()?;
    Ok(results)
}

/// The tables an append writes, opened once per group.
struct AppendTables<'t> {
    seen: redb::Table<'t, &'static str, u64>,
    expiry: redb::Table<'t, (u64, &'static str), ()>,
    inbox: redb::Table<'t, (&'static str, u64), &'static [u8]>,
    seq: redb::Table<'t, &'static str, u64>,
    ready: redb::Table<'t, &'static str, u64>,
    outbox_ready: redb::Table<'t, &'static str, u64>,
    consent: redb::Table<'t, (&'static str, u64), &'static [u8]>,
    data_keys: redb::Table<'t, &'static str, (u64, &'static [u8])>,
    counters: redb::Table<'t, (&'static str, &'static str), u64>,
    last_campaign: redb::Table<'t, &'static str, (u64, &'static str)>,
    campaign_counts: redb::Table<'t, (&'static str, &'static str), i64>,
}

impl<'t> AppendTables<'t> {
    fn open(txn: &'t redb::WriteTransaction) -> Result<Self, redb::Error> {
        Ok(AppendTables {
            seen: txn.open_table(SEEN)?,
            expiry: txn.open_table(SEEN_EXPIRY)?,
            inbox: txn.open_table(INBOX)?,
            seq: txn.open_table(SEQ)?,
            ready: txn.open_table(READY)?,
            outbox_ready: txn.open_table(OUTBOX_READY)?,
            consent: txn.open_table(CONSENT)?,
            data_keys: txn.open_table(DATA_KEYS)?,
            counters: txn.open_table(STATS)?,
            last_campaign: txn.open_table(LAST_CAMPAIGN)?,
            campaign_counts: txn.open_table(CAMPAIGN_COUNTS)?,
        })
    }

    /// Appends one entry (see [`crate::store::InboxStore::append`]).
    fn append(&mut self, e: &InboxEntry, now: u64) -> Result<Appended, redb::Error> {
        if let (Queue::Contact(k) | Queue::Outbox(k), Some(key)) = (&e.queue, &e.key) {
            let stored = self
                .data_keys
                .get(k.as_str())?
                .and_then(|v| unexpired(v.value(), now));
            let fits = match &stored {
                Some(w) => *w == key.wrapped,
                None => key.fresh,
            };
            if !fits {
                return Ok(Appended::KeyMismatch);
            }
        }
        let queue = e.queue.name();
        let seen_key = format!("{queue}/{}", e.dedup);
        let fresh = match self.seen.get(seen_key.as_str())? {
            Some(expiry) => expiry.value() <= now,
            None => true,
        };
        if !fresh {
            return Ok(Appended::Duplicate);
        }
        let until = now + DEDUP_TTL.as_secs();
        if let Some(old) = self.seen.insert(seen_key.as_str(), until)? {
            self.expiry.remove((old.value(), seen_key.as_str()))?;
        }
        self.expiry.insert((until, seen_key.as_str()), ())?;
        // A key is stored (or kept longer) only with a new entry.
        if let (Queue::Contact(k) | Queue::Outbox(k), Some(key)) = (&e.queue, &e.key) {
            let until = now + key.ttl.as_secs().max(1);
            self.data_keys
                .insert(k.as_str(), (until, key.wrapped.as_slice()))?;
        }
        // Whether the consent it carries is recorded (decided
        // before the entry is stored: a refused grant stores the
        // entry as it reads then).
        let decision = match (&e.queue, &e.consent) {
            (Queue::Contact(k), Some(change)) => {
                let q = format!("k:{k}");
                let mut ledger = Vec::new();
                for item in self
                    .consent
                    .range((q.as_str(), 0)..=(q.as_str(), u64::MAX))?
                {
                    let (_, v) = item?;
                    ledger.extend(serde_json::from_slice::<ConsentChange>(v.value()).ok());
                }
                crate::domain::consent::decide(&ledger, change)
            }
            _ => crate::domain::consent::Decision::Record,
        };
        let sealed = match (decision, &e.refused) {
            (crate::domain::consent::Decision::Refused, Some(r)) => r.as_slice(),
            _ => e.sealed.as_slice(),
        };
        let n = self
            .seq
            .get(queue.as_str())?
            .map(|v| v.value())
            .unwrap_or(0);
        self.seq.insert(queue.as_str(), n + 1)?;
        self.inbox.insert((queue.as_str(), n), sealed)?;
        if let Queue::Contact(k) = &e.queue
            && self.ready.get(k.as_str())?.is_none()
        {
            self.ready.insert(k.as_str(), now * 1000)?;
        }
        // A job appended straight to an outbox (an integration
        // event): its senders find it ready.
        if let Queue::Outbox(k) = &e.queue
            && self.outbox_ready.get(k.as_str())?.is_none()
        {
            self.outbox_ready.insert(k.as_str(), now * 1000)?;
        }
        if let (Queue::Contact(k), Some(change)) = (&e.queue, &e.consent) {
            // The same ledger as append_consent writes.
            let bytes =
                serde_json::to_vec(change).map_err(|e| redb::Error::Corrupted(e.to_string()))?;
            let q = format!("k:{k}");
            match decision {
                crate::domain::consent::Decision::Record => {}
                crate::domain::consent::Decision::Same => {
                    // A second STOP: nothing to record or count.
                    return Ok(Appended::NewSameConsent);
                }
                crate::domain::consent::Decision::Refused => {
                    return Ok(Appended::NewGrantRefused);
                }
            }
            let n = self.seq.get(q.as_str())?.map(|v| v.value()).unwrap_or(0);
            self.consent.insert((q.as_str(), n), bytes.as_slice())?;
            self.seq.insert(q.as_str(), n + 1)?;
            if let Some(name) = stats::of_consent(change) {
                let day = stats::day(now);
                let cur = self
                    .counters
                    .get((day.as_str(), name.as_str()))?
                    .map_or(0, |v| v.value());
                self.counters
                    .insert((day.as_str(), name.as_str()), cur + 1)?;
                if stats::is_opt_out(&name) {
                    attribute_opt_out(
                        &mut self.last_campaign,
                        &mut self.campaign_counts,
                        k.as_str(),
                        now,
                    )?;
                }
            }
        }
        Ok(Appended::New)
    }
}

fn apply_appends(
    txn: &redb::WriteTransaction,
    batches: &[&[InboxEntry]],
    now: u64,
) -> Result<Vec<Vec<Appended>>, redb::Error> {
    let mut tables = AppendTables::open(txn)?;
    sweep_expired(&mut tables.seen, &mut tables.expiry, now)?;
    batches
        .iter()
        .map(|entries| entries.iter().map(|e| tables.append(e, now)).collect())
        .collect()
}

/// Forgets de-duplication marks whose time is up, oldest first.
fn sweep_expired(
    seen: &mut redb::Table<&str, u64>,
    expiry: &mut redb::Table<(u64, &str), ()>,
    now: u64,
) -> Result<(), redb::Error> {
    let mut due = Vec::new();
    for item in expiry.range((0, "")..(now + 1, ""))?.take(MAX_SWEEP) {
        let (k, _) = item?;
        let (at, key) = k.value();
        due.push((at, key.to_owned()));
    }
    for (at, key) in due {
        expiry.remove((at, key.as_str()))?;
        if seen.get(key.as_str())?.is_some_and(|v| v.value() <= now) {
            seen.remove(key.as_str())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableTableMetadata;

    #[test]
    fn a_mark_is_forgotten_and_swept_once_its_time_is_up() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(dir.path()).expect("opens");
        let entry = InboxEntry {
            queue: Queue::System,
            dedup: "k".into(),
            sealed: b"x".to_vec(),
            consent: None,
            refused: None,
            key: None,
        };
        let batch: &[InboxEntry] = std::slice::from_ref(&entry);
        let t0 = 1_000_000;
        let ttl = DEDUP_TTL.as_secs();
        let once = |now| write_group(&store.db, &[batch], now).expect("write")[0][0];
        assert_eq!(once(t0), Appended::New);
        assert_eq!(once(t0 + ttl - 1), Appended::Duplicate);
        let marks = || {
            let txn = store.db.begin_read().expect("read");
            let a = txn.open_table(SEEN).expect("seen").len().expect("len");
            let b = txn
                .open_table(SEEN_EXPIRY)
                .expect("expiry")
                .len()
                .expect("len");
            (a, b)
        };
        assert_eq!(marks(), (1, 1));
        // Past the TTL the same key is new again, and the old mark is gone.
        assert_eq!(once(t0 + ttl + 1), Appended::New);
        assert_eq!(marks(), (1, 1));
        // A write long after sweeps marks nobody refreshed.
        let other = InboxEntry {
            dedup: "other".into(),
            ..entry.clone()
        };
        write_group(&store.db, &[std::slice::from_ref(&other)], t0 + 3 * ttl).expect("write");
        assert_eq!(marks(), (1, 1), "only the fresh mark remains");
    }
}
