//! The store conformance suite: the same cases against both backends,
//! through the `Store` trait only, one file per role of the store; the
//! helpers they share are here.

use std::sync::Arc;

use futures_util::future::join_all;
use secrecy::SecretString;
use std::time::Duration;
use whatsify::config::{Backend as Kind, StoreSettings};
use whatsify::domain::ContactKey;
use whatsify::domain::audit::GENESIS;
use whatsify::domain::consent::ConsentChange;
use whatsify::domain::consent::GRANTS_PER_DAY;

use whatsify::store::{
    self, Appended, Breaker, CampaignSend, Commit, Committed, Delivery, DeliveryState, Dispatched,
    Finish, InboxEntry, Lane, Queue, Store,
};

use crate::both_backends;
use crate::helpers::Backend;

async fn open(backend: &Backend) -> Arc<dyn Store> {
    let settings = match backend {
        Backend::Embedded(path) => StoreSettings {
            backend: Kind::Embedded,
            path: path.clone(),
            redis_url: SecretString::from(""),
            redis_ca_file: None,
            key_prefix: String::new(),
        },
        Backend::Redis { url, prefix } => StoreSettings {
            backend: Kind::Redis,
            path: "unused".into(),
            redis_url: SecretString::from(url.as_str()),
            redis_ca_file: None,
            key_prefix: prefix.clone(),
        },
        Backend::Cluster { urls, prefix } => StoreSettings {
            backend: Kind::RedisCluster,
            path: "unused".into(),
            redis_url: SecretString::from(urls.as_str()),
            redis_ca_file: None,
            key_prefix: prefix.clone(),
        },
    };
    store::open(&settings).await.expect("store opens")
}

mod audit;
mod campaigns;
mod cluster;
mod contacts;
mod inbox;
mod keys;
mod lanes;
mod ops;
mod outbox;
mod rules;

fn contact(n: u8) -> Queue {
    Queue::Contact(ContactKey::parse(&format!("{:032x}", n as u128 + 0xabc)).expect("key"))
}

fn entry(queue: &Queue, dedup: &str, body: &str) -> InboxEntry {
    InboxEntry {
        queue: queue.clone(),
        dedup: dedup.to_owned(),
        sealed: body.as_bytes().to_vec(),
        consent: None,
        refused: None,
        key: None,
    }
}

fn bodies(entries: &[whatsify::store::StoredEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| String::from_utf8(e.sealed.clone()).expect("utf-8"))
        .collect()
}

fn key(n: u8) -> ContactKey {
    ContactKey::parse(&format!("{:032x}", n as u128 + 0xdef)).expect("key")
}

const LEASE: Duration = Duration::from_secs(30);

fn record(job: &str, state: DeliveryState, at: u64) -> Delivery {
    Delivery {
        job: job.into(),
        state,
        at,
        wamid: None,
        kind: None,
        code: None,
        reason: None,
        attempts: None,
    }
}

fn accepted(job: &str) -> Finish {
    Finish {
        record: Delivery {
            wamid: Some(format!("w-{job}")),
            kind: Some("text".into()),
            ..record(job, DeliveryState::Accepted, 100)
        },
        dead_letter: None,
        consent: None,
        also: Vec::new(),
        release: false,
        stats: Vec::new(),
    }
}

/// Queues `jobs` in the contact's outbox through an inbox commit.
/// A commit that acknowledges a claim's entries and changes nothing else.
fn ack_all(c: &whatsify::store::Claim) -> Commit {
    Commit {
        acked: c.entries.iter().map(|e| e.id.clone()).collect(),
        session: None,
        session_ttl: Duration::from_secs(60),
        outbox: Vec::new(),
        wake_at: None,
        window: None,
        deliveries: Vec::new(),
        consent: Vec::new(),
        profile: None,
        history: Vec::new(),
        profile_ttl: Duration::from_secs(3600),
        stats: Vec::new(),
    }
}

async fn queue_jobs(
    s: &Arc<dyn Store>,
    k: &ContactKey,
    jobs: &[&str],
    window: Option<(&str, u64)>,
) {
    s.append(vec![entry(
        &Queue::Contact(k.clone()),
        &format!("in-{}", jobs.join("")),
        "in",
    )])
    .await
    .expect("append");
    let c = s
        .claim(Lane::Inbox, k, "w", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    let commit = Commit {
        outbox: jobs.iter().map(|j| j.as_bytes().to_vec()).collect(),
        window: window.map(|(n, t)| (n.to_owned(), t)),
        ..ack_all(&c)
    };
    assert!(matches!(
        s.commit(&c, commit).await.expect("commit"),
        Committed::Done { .. }
    ));
}

async fn status(s: &Arc<dyn Store>, k: &ContactKey, update: Delivery) {
    s.append(vec![entry(
        &Queue::Contact(k.clone()),
        &format!("st-{:?}-{}", update.state, update.at),
        "status",
    )])
    .await
    .expect("append");
    let c = s
        .claim(Lane::Inbox, k, "w", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    let commit = Commit {
        acked: c.entries.iter().map(|e| e.id.clone()).collect(),
        session: None,
        session_ttl: Duration::from_secs(60),
        outbox: Vec::new(),
        wake_at: None,
        window: None,
        deliveries: vec![update],
        consent: Vec::new(),
        profile: None,
        history: Vec::new(),
        profile_ttl: Duration::from_secs(3600),
        stats: Vec::new(),
    };
    s.commit(&c, commit).await.expect("commit");
}

fn audit_event(kind: &str, at: u64) -> whatsify::domain::audit::AuditEvent {
    whatsify::domain::audit::AuditEvent {
        at,
        kind: kind.into(),
        contact: Some("c0ffee".into()),
        actor: whatsify::domain::audit::Actor::Customer,
        detail: None,
        business: None,
        by: None,
    }
}

/// Appends `kinds` (kind, contact) after the head with `audit_append_run`.
async fn audit_run(
    s: &dyn Store,
    chain: &whatsify::privacy::audit::Chain,
    kinds: &[(&str, &str)],
) -> Vec<whatsify::domain::audit::Entry> {
    let (mut seq, mut prev) = s.audit_head().await.expect("head");
    let run: Vec<_> = kinds
        .iter()
        .map(|(kind, who)| {
            let mut event = audit_event(kind, 100 + seq);
            event.contact = Some((*who).to_owned());
            seq += 1;
            let e = chain.link(seq, &prev, event);
            prev.clone_from(&e.hash);
            e
        })
        .collect();
    assert!(s.audit_append_run(&run).await.expect("run"));
    run
}

/// Makes `s` look like a store from before the request index: the index
/// and its mark gone (the log and its head kept).
async fn forget_the_request_index(backend: &Backend, s: Arc<dyn Store>) -> Arc<dyn Store> {
    match backend {
        Backend::Redis { url, prefix } => {
            let client = redis::Client::open(url.as_str()).expect("client");
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .expect("connection");
            let () = redis::pipe()
                .cmd("DEL")
                .arg(format!("{prefix}{{audit}}:requests"))
                .arg(format!("{prefix}{{audit}}:requests:closed"))
                .ignore()
                .cmd("HDEL")
                .arg(format!("{prefix}{{audit}}:head"))
                .arg("indexed_from")
                .ignore()
                .query_async(&mut conn)
                .await
                .expect("forget");
            s
        }
        Backend::Embedded(path) => {
            drop(s);
            let file = path.join("whatsify.redb");
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let db = loop {
                match redb::Database::create(&file) {
                    Ok(db) => break db,
                    Err(e) => {
                        assert!(std::time::Instant::now() < deadline, "file still open: {e}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            };
            let txn = db.begin_write().expect("write");
            for name in ["audit_requests", "audit_requests_closed", "audit_head"] {
                let t: redb::TableDefinition<u64, u64> = redb::TableDefinition::new(name);
                assert!(txn.delete_table(t).expect("delete"), "{name}");
            }
            txn.commit().expect("commit");
            drop(db);
            open(backend).await
        }
        Backend::Cluster { .. } => unreachable!("not run on a cluster"),
    }
}

fn keyed(queue: &Queue, dedup: &str, wrapped: &str, fresh: bool) -> InboxEntry {
    InboxEntry {
        refused: None,
        key: Some(whatsify::store::EntryKey {
            wrapped: wrapped.as_bytes().to_vec(),
            fresh,
            ttl: Duration::from_secs(3600),
        }),
        ..entry(queue, dedup, dedup)
    }
}

// Campaigns.
/// A campaign send: the sealed job `job` under the data key `wrapped`.
fn campaign_job(c: &ContactKey, job: &str, wrapped: &str, fresh: bool) -> CampaignSend {
    CampaignSend {
        contact: c.clone(),
        job: Ok(job.as_bytes().to_vec()),
        key: Some(whatsify::store::EntryKey {
            wrapped: wrapped.as_bytes().to_vec(),
            fresh,
            ttl: Duration::from_secs(3600),
        }),
        ttl: Duration::from_secs(3600),
    }
}

/// A campaign send that skips the contact for `reason`.
fn campaign_skip(c: &ContactKey, reason: whatsify::domain::campaign::Skip) -> CampaignSend {
    CampaignSend {
        contact: c.clone(),
        job: Err(reason),
        key: None,
        ttl: Duration::from_secs(3600),
    }
}

/// A campaign with an audience of `n` entries (`m0`, `m1`, …).
async fn new_campaign(s: &Arc<dyn Store>, id: &str, n: usize) {
    let audience = (0..n).map(|i| format!("m{i}").into_bytes()).collect();
    s.create_campaign(id, format!("{{\"id\":\"{id}\"}}").as_bytes(), audience)
        .await
        .expect("create");
    // The dispatcher "d" holds it: only the holder drops audience entries.
    assert!(
        s.campaign_lease(id, "d", Duration::from_secs(3600))
            .await
            .expect("lease")
    );
}

/// One campaign counter (0 when it was never counted).
async fn counter(s: &Arc<dyn Store>, id: &str, name: &str) -> i64 {
    let counts = s.campaign_counts(id).await.expect("counts");
    counts.get(name).copied().unwrap_or(0)
}

/// The campaign's counters that are not 0 (but `dispatched`, which every
/// done send adds to, checked on its own).
async fn nonzero(s: &Arc<dyn Store>, id: &str) -> Vec<(String, i64)> {
    s.campaign_counts(id)
        .await
        .expect("counts")
        .into_iter()
        .filter(|(name, n)| *n != 0 && name != "dispatched")
        .collect()
}

fn counts(pairs: &[(&str, i64)]) -> Vec<(String, i64)> {
    pairs.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect()
}

/// Sends the contact's first outbox job and finishes it with `record`.
async fn finish_first(s: &Arc<dyn Store>, k: &ContactKey, record: Delivery) {
    let c = s
        .claim(Lane::Outbox, k, "sender", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    assert!(!c.entries.is_empty(), "a job is queued");
    let mut done = Finish::record(record);
    done.release = true;
    assert!(s.finish(&c, &c.entries[0].id, done).await.expect("finish"));
}

/// A campaign job's accepted record (as a sender writes it).
fn campaign_accepted(job: &str) -> Delivery {
    Delivery {
        wamid: Some(format!("w-{job}")),
        kind: Some("template".into()),
        ..record(job, DeliveryState::Accepted, whatsify::clock::now_secs())
    }
}

fn marketing(granted: bool, source: &str) -> whatsify::domain::consent::ConsentChange {
    whatsify::domain::consent::ConsentChange {
        purpose: whatsify::domain::consent::MARKETING.into(),
        granted,
        at: whatsify::clock::now_secs(),
        source: source.into(),
        policy_version: "v1".into(),
        evidence: None,
        business: None,
    }
}

/// Claims the contact's inbox and commits `consent` with it (a flow's
/// opt-out step, the Stop button), acknowledging what was claimed.
async fn commit_consent(s: &Arc<dyn Store>, k: &ContactKey, consent: Vec<ConsentChange>) {
    let claim = s
        .claim(Lane::Inbox, k, "w", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    let commit = Commit {
        consent,
        ..ack_all(&claim)
    };
    s.commit(&claim, commit).await.expect("commit");
}
