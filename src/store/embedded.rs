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
//!
//! Writes go through one writer thread that gathers concurrent requests
//! into a single transaction (group commit): each commit is durable
//! (fsync) before any of its callers is answered, and the cost of the fsync
//! is shared by everyone waiting.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::{Appended, DEDUP_TTL, InboxEntry, Queue, Store, StoreError, StoredEntry, now_secs};
use crate::domain::ContactKey;

const SEEN: TableDefinition<&str, u64> = TableDefinition::new("seen");
const INBOX: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("inbox");
const SEEN_EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("seen_expiry");
const SEQ: TableDefinition<&str, u64> = TableDefinition::new("seq");
const READY: TableDefinition<&str, u64> = TableDefinition::new("ready");

/// Most requests folded into one transaction.
const MAX_GROUP: usize = 512;
/// Most expired de-duplication marks removed per transaction.
const MAX_SWEEP: usize = 1_000;

type Reply = oneshot::Sender<Result<Vec<Appended>, StoreError>>;

/// Work for the writer thread.
enum Job {
    Append(Vec<InboxEntry>, Reply),
    /// Answers once the writer can take work (for `/readyz`).
    Ping(oneshot::Sender<()>),
}

/// The embedded store; cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: mpsc::Sender<Job>,
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
            txn.commit().map_err(corrupt)?;
        }
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel();
        let wdb = db.clone();
        std::thread::Builder::new()
            .name("whatsify-redb-writer".into())
            .spawn(move || writer_loop(&wdb, rx))
            .map_err(|e| StoreError::Unavailable(format!("cannot start writer: {e}")))?;
        Ok(EmbeddedStore { db, writer: tx })
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

fn writer_loop(db: &Database, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut group = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Append(entries, reply) => group.push((entries, reply)),
                Job::Ping(reply) => {
                    let _ = reply.send(());
                }
            }
            if group.len() < MAX_GROUP {
                next = rx.try_recv().ok();
            }
        }
        if group.is_empty() {
            continue;
        }
        let batches: Vec<&[InboxEntry]> = group.iter().map(|(e, _)| e.as_slice()).collect();
        match write_group(db, &batches, now_secs()) {
            Ok(results) => {
                for ((_, reply), result) in group.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(e) => {
                for (_, reply) in group {
                    let _ = reply.send(Err(StoreError::Unavailable(e.to_string())));
                }
            }
        }
    }
}

fn write_group(
    db: &Database,
    batches: &[&[InboxEntry]],
    now: u64,
) -> Result<Vec<Vec<Appended>>, redb::Error> {
    let txn = db.begin_write()?;
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
    txn.commit()?;
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

    async fn ready_contacts(&self, limit: usize) -> Result<Vec<ContactKey>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let table = txn.open_table(READY).map_err(corrupt)?;
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
