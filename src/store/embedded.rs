//! The embedded backend: one redb file (`<store.path>/whatsify.redb`), no
//! server, one process.
//!
//! Tables (the same content as the Redis keys):
//!
//! | table | key → value | lifetime |
//! |---|---|---|
//! | `seen` | `"<queue>/<dedup>"` → expiry (Unix s) | 8 days, checked on read |
//! | `seen_expiry` | `(expiry, "<queue>/<dedup>")` → () | swept with `seen` once expired |
//! | `inbox` | `("<queue>", seq)` → sealed event | until processed by a worker |
//! | `seq` | `"<queue>"` → next sequence number | with its queue |
//! | `ready` | contact key → first arrival (Unix ms) | until the inbox is drained |
//! | `outbox_ready` | contact key → first job (Unix ms) | until the outbox is drained |
//! | `timers`, `timer_of` | `(due, contact)` → (), and contact → due | until the timer fires or is cancelled |
//! | `sessions` | contact key → sealed session | until the conversation ends (the engine ignores one idle past `flows.session_ttl`) |
//!
//! The outbox shares the `inbox` table under the queue name `o:<contact>`.
//! Leases live in memory: one process owns the file, and a restart frees
//! them all.
//!
//! Writes go through one writer thread that gathers concurrent requests
//! into a single transaction (group commit): each commit is durable
//! (fsync) before any of its callers is answered, and the cost of the fsync
//! is shared by everyone waiting.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::{
    Appended, Claim, Commit, Committed, DEDUP_TTL, InboxEntry, Lane, Queue, Store, StoreError,
    StoredEntry, now_secs,
};
use crate::domain::ContactKey;

const SEEN: TableDefinition<&str, u64> = TableDefinition::new("seen");
const INBOX: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("inbox");
const SEEN_EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("seen_expiry");
const SEQ: TableDefinition<&str, u64> = TableDefinition::new("seq");
const READY: TableDefinition<&str, u64> = TableDefinition::new("ready");
const OUTBOX_READY: TableDefinition<&str, u64> = TableDefinition::new("outbox_ready");
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const TIMERS: TableDefinition<(u64, &str), ()> = TableDefinition::new("timers");
const TIMER_OF: TableDefinition<&str, u64> = TableDefinition::new("timer_of");

/// Lease holders: (lane, contact) → (token, expiry).
type Leases = Arc<Mutex<HashMap<(Lane, String), (String, Instant)>>>;

/// Most requests folded into one transaction.
const MAX_GROUP: usize = 512;
/// Most expired de-duplication marks removed per transaction.
const MAX_SWEEP: usize = 1_000;

type Reply = oneshot::Sender<Result<Vec<Appended>, StoreError>>;

type Finish = Box<dyn FnOnce(bool) + Send>;
type Work = Box<dyn FnOnce(&redb::WriteTransaction) -> (bool, Finish) + Send>;

/// Work for the writer thread.
enum Job {
    Append(Vec<InboxEntry>, Reply),
    /// Answers once the writer can take work (for `/readyz`).
    Ping(oneshot::Sender<()>),
    /// Anything else that writes: run in its own transaction.
    /// Runs in the group's transaction; returns what to do once the
    /// transaction is committed (`true`) or abandoned (`false`).
    Other(Work),
}

/// The embedded store; cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: mpsc::Sender<Job>,
    leases: Leases,
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in the folder `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(path).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot create store folder {}: {e}",
                path.display()
            ))
        })?;
        let db = Database::create(path.join("whatsify.redb")).map_err(|e| {
            StoreError::Unavailable(format!("cannot open store in {}: {e}", path.display()))
        })?;
        {
            let txn = db.begin_write().map_err(corrupt)?;
            txn.open_table(SEEN).map_err(corrupt)?;
            txn.open_table(SEEN_EXPIRY).map_err(corrupt)?;
            txn.open_table(INBOX).map_err(corrupt)?;
            txn.open_table(SEQ).map_err(corrupt)?;
            txn.open_table(READY).map_err(corrupt)?;
            txn.open_table(OUTBOX_READY).map_err(corrupt)?;
            txn.open_table(SESSIONS).map_err(corrupt)?;
            txn.open_table(TIMERS).map_err(corrupt)?;
            txn.open_table(TIMER_OF).map_err(corrupt)?;
            txn.commit().map_err(corrupt)?;
        }
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel();
        let wdb = db.clone();
        std::thread::Builder::new()
            .name("whatsify-redb-writer".into())
            .spawn(move || writer_loop(&wdb, rx))
            .map_err(|e| StoreError::Unavailable(format!("cannot start writer: {e}")))?;
        Ok(EmbeddedStore {
            db,
            writer: tx,
            leases: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}

impl EmbeddedStore {
    /// Runs `f` in a write transaction on the writer thread.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let stopped = || StoreError::Unavailable("store writer stopped".into());
        let (tx, rx) = oneshot::channel();
        let job = Job::Other(Box::new(move |txn: &redb::WriteTransaction| {
            let result = f(txn);
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |committed: bool| {
                let _ = tx.send(match result {
                    Ok(v) if committed => Ok(v),
                    Ok(_) => Err(StoreError::Unavailable("store transaction failed".into())),
                    Err(e) => Err(e),
                });
            });
            (ok, finish)
        }));
        self.writer.send(job).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    fn holds(leases: &Leases, claim: &Claim) -> bool {
        let map = leases.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(claim.lane, claim.contact.as_str().to_owned()))
            .is_some_and(|(owner, until)| *owner == claim.owner && *until > Instant::now())
    }

    fn unlease(leases: &Leases, claim: &Claim) {
        let mut map = leases.lock().unwrap_or_else(|p| p.into_inner());
        let key = (claim.lane, claim.contact.as_str().to_owned());
        if map
            .get(&key)
            .is_some_and(|(owner, _)| *owner == claim.owner)
        {
            map.remove(&key);
        }
    }
}

fn seq_of(id: &str) -> Result<u64, StoreError> {
    id.parse()
        .map_err(|_| StoreError::Corrupt(format!("not an entry id: {id}")))
}

fn queue_is_empty(
    table: &redb::Table<(&str, u64), &[u8]>,
    queue: &str,
) -> Result<bool, StoreError> {
    Ok(table
        .range((queue, 0)..=(queue, u64::MAX))
        .map_err(corrupt)?
        .next()
        .is_none())
}

fn writer_loop(db: &Database, rx: mpsc::Receiver<Job>) {
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

fn apply_appends(
    txn: &redb::WriteTransaction,
    batches: &[&[InboxEntry]],
    now: u64,
) -> Result<Vec<Vec<Appended>>, redb::Error> {
    let mut results = Vec::with_capacity(batches.len());
    {
        let mut seen = txn.open_table(SEEN)?;
        let mut expiry = txn.open_table(SEEN_EXPIRY)?;
        sweep_expired(&mut seen, &mut expiry, now)?;
        let mut inbox = txn.open_table(INBOX)?;
        let mut seq = txn.open_table(SEQ)?;
        let mut ready = txn.open_table(READY)?;
        for entries in batches {
            let mut out = Vec::with_capacity(entries.len());
            for e in *entries {
                let queue = e.queue.name();
                let seen_key = format!("{queue}/{}", e.dedup);
                let fresh = match seen.get(seen_key.as_str())? {
                    Some(expiry) => expiry.value() <= now,
                    None => true,
                };
                if !fresh {
                    out.push(Appended::Duplicate);
                    continue;
                }
                let until = now + DEDUP_TTL.as_secs();
                if let Some(old) = seen.insert(seen_key.as_str(), until)? {
                    expiry.remove((old.value(), seen_key.as_str()))?;
                }
                expiry.insert((until, seen_key.as_str()), ())?;
                let n = seq.get(queue.as_str())?.map(|v| v.value()).unwrap_or(0);
                seq.insert(queue.as_str(), n + 1)?;
                inbox.insert((queue.as_str(), n), e.sealed.as_slice())?;
                if let Queue::Contact(k) = &e.queue
                    && ready.get(k.as_str())?.is_none()
                {
                    ready.insert(k.as_str(), now * 1000)?;
                }
                out.push(Appended::New);
            }
            results.push(out);
        }
    }
    Ok(results)
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

#[async_trait]
impl Store for EmbeddedStore {
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

    async fn ready_contacts(
        &self,
        lane: Lane,
        limit: usize,
    ) -> Result<Vec<ContactKey>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let table = txn
                .open_table(match lane {
                    Lane::Inbox => READY,
                    Lane::Outbox => OUTBOX_READY,
                })
                .map_err(corrupt)?;
            let mut all = Vec::new();
            for item in table.iter().map_err(corrupt)? {
                let (k, v) = item.map_err(corrupt)?;
                if let Some(key) = ContactKey::parse(k.value()) {
                    all.push((v.value(), key));
                }
            }
            all.sort();
            Ok(all.into_iter().take(limit).map(|(_, k)| k).collect())
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let stopped = || StoreError::Unavailable("store writer stopped".into());
        let (tx, rx) = oneshot::channel();
        self.writer.send(Job::Ping(tx)).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?;
        self.blocking(|db| {
            let txn = db.begin_read().map_err(corrupt)?;
            txn.open_table(SEQ).map_err(corrupt)?;
            Ok(())
        })
        .await
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
        let session = match lane {
            Lane::Inbox => {
                let key = contact.as_str().to_owned();
                self.blocking(move |db| {
                    let txn = db.begin_read().map_err(corrupt)?;
                    let t = txn.open_table(SESSIONS).map_err(corrupt)?;
                    Ok(t.get(key.as_str())
                        .map_err(corrupt)?
                        .map(|v| v.value().to_vec()))
                })
                .await?
            }
            Lane::Outbox => None,
        };
        Ok(Some(Claim {
            lane,
            contact: contact.clone(),
            owner: owner.to_owned(),
            version: None,
            entries,
            session,
        }))
    }

    async fn commit(&self, claim: &Claim, commit: Commit) -> Result<Committed, StoreError> {
        let leases = self.leases.clone();
        let c = claim.clone();
        let now_ms = now_secs() * 1000;
        let result = self
            .write(move |txn| {
                // Checked on the writer thread, in the transaction's turn.
                if !Self::holds(&leases, &c) {
                    return Ok(Committed::LeaseLost);
                }
                let key = c.contact.as_str();
                let inbox_q = Queue::Contact(c.contact.clone()).name();
                let outbox_q = Queue::Outbox(c.contact.clone()).name();
                let mut inbox = txn.open_table(INBOX).map_err(corrupt)?;
                for id in &commit.acked {
                    inbox
                        .remove((inbox_q.as_str(), seq_of(id)?))
                        .map_err(corrupt)?;
                }
                let mut sessions = txn.open_table(SESSIONS).map_err(corrupt)?;
                match &commit.session {
                    Some(bytes) => {
                        sessions.insert(key, bytes.as_slice()).map_err(corrupt)?;
                    }
                    None => {
                        sessions.remove(key).map_err(corrupt)?;
                    }
                }
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
                let mut timers = txn.open_table(TIMERS).map_err(corrupt)?;
                let mut timer_of = txn.open_table(TIMER_OF).map_err(corrupt)?;
                if let Some(old) = timer_of.remove(key).map_err(corrupt)? {
                    timers.remove((old.value(), key)).map_err(corrupt)?;
                }
                if let Some(at) = commit.wake_at {
                    timers.insert((at, key), ()).map_err(corrupt)?;
                    timer_of.insert(key, at).map_err(corrupt)?;
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

    async fn due_timers(&self, now: u64, limit: usize) -> Result<Vec<ContactKey>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let t = txn.open_table(TIMERS).map_err(corrupt)?;
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

    async fn sent(&self, claim: &Claim, id: &str) -> Result<bool, StoreError> {
        let leases = self.leases.clone();
        let c = claim.clone();
        let seq = seq_of(id)?;
        self.write(move |txn| {
            if !Self::holds(&leases, &c) {
                return Ok(false);
            }
            let q = Queue::Outbox(c.contact.clone()).name();
            txn.open_table(INBOX)
                .map_err(corrupt)?
                .remove((q.as_str(), seq))
                .map_err(corrupt)?;
            Ok(true)
        })
        .await
    }

    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        if claim.lane == Lane::Outbox {
            let c = claim.clone();
            self.write(move |txn| {
                let q = Queue::Outbox(c.contact.clone()).name();
                let inbox = txn.open_table(INBOX).map_err(corrupt)?;
                if queue_is_empty(&inbox, &q)? {
                    txn.open_table(OUTBOX_READY)
                        .map_err(corrupt)?
                        .remove(c.contact.as_str())
                        .map_err(corrupt)?;
                }
                Ok(())
            })
            .await?;
        }
        Self::unlease(&self.leases, claim);
        Ok(())
    }
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
