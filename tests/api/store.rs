//! The store conformance suite: the same cases against both backends,
//! through the `Store` trait only.

use std::sync::Arc;

use futures_util::future::join_all;
use secrecy::SecretString;
use std::time::Duration;
use whatsify::config::{Backend as Kind, StoreSettings};
use whatsify::domain::ContactKey;

use whatsify::store::{
    self, Appended, Breaker, Commit, Committed, Delivery, DeliveryState, Finish, InboxEntry, Lane,
    Queue, Store,
};

use crate::both_backends;
use crate::helpers::Backend;

async fn open(backend: &Backend) -> Arc<dyn Store> {
    let settings = match backend {
        Backend::Embedded(path) => StoreSettings {
            backend: Kind::Embedded,
            path: path.clone(),
            redis_url: SecretString::from(""),
            key_prefix: String::new(),
        },
        Backend::Redis { url, prefix } => StoreSettings {
            backend: Kind::Redis,
            path: "unused".into(),
            redis_url: SecretString::from(url.as_str()),
            key_prefix: prefix.clone(),
        },
    };
    store::open(&settings).await.expect("store opens")
}

fn contact(n: u8) -> Queue {
    Queue::Contact(ContactKey::parse(&format!("{:032x}", n as u128 + 0xabc)).expect("key"))
}

fn entry(queue: &Queue, dedup: &str, body: &str) -> InboxEntry {
    InboxEntry {
        queue: queue.clone(),
        dedup: dedup.to_owned(),
        sealed: body.as_bytes().to_vec(),
        consent: None,
        key: None,
    }
}

fn bodies(entries: &[whatsify::store::StoredEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| String::from_utf8(e.sealed.clone()).expect("utf-8"))
        .collect()
}

async fn appends_in_order_and_skips_seen_keys(backend: &Backend) {
    let s = open(backend).await;
    let a = contact(1);
    let r = s
        .append(vec![
            entry(&a, "k1", "one"),
            entry(&a, "k2", "two"),
            entry(&a, "k1", "again"),
        ])
        .await
        .expect("append");
    assert_eq!(r, [Appended::New, Appended::New, Appended::Duplicate]);
    let r = s
        .append(vec![entry(&a, "k2", "x"), entry(&a, "k3", "three")])
        .await
        .expect("append");
    assert_eq!(r, [Appended::Duplicate, Appended::New]);
    let got = s.read(&a, 100).await.expect("read");
    assert_eq!(bodies(&got), ["one", "two", "three"]);
    let ids: Vec<&String> = got.iter().map(|e| &e.id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "ids increase in append order");
    assert_eq!(bodies(&s.read(&a, 2).await.expect("read")), ["one", "two"]);
    assert!(s.append(Vec::new()).await.expect("empty append").is_empty());
}
both_backends!(order_and_dedup, appends_in_order_and_skips_seen_keys);

async fn queues_are_separate(backend: &Backend) {
    let s = open(backend).await;
    let (a, b) = (contact(2), contact(3));
    s.append(vec![
        entry(&a, "same-key", "for a"),
        entry(&b, "same-key", "for b"),
        entry(&Queue::System, "same-key", "system"),
        entry(&Queue::Quarantine, "same-key", "quarantine"),
    ])
    .await
    .expect("append");
    assert_eq!(bodies(&s.read(&a, 10).await.expect("read")), ["for a"]);
    assert_eq!(bodies(&s.read(&b, 10).await.expect("read")), ["for b"]);
    assert_eq!(
        bodies(&s.read(&Queue::System, 10).await.expect("read")),
        ["system"]
    );
    assert_eq!(
        bodies(&s.read(&Queue::Quarantine, 10).await.expect("read")),
        ["quarantine"]
    );
    assert!(s.read(&contact(4), 10).await.expect("read").is_empty());
}
both_backends!(separate_queues, queues_are_separate);

async fn contacts_with_events_are_ready_and_system_queues_are_not(backend: &Backend) {
    let s = open(backend).await;
    assert!(
        s.ready_contacts(Lane::Inbox, 10)
            .await
            .expect("ready")
            .is_empty()
    );
    let (a, b) = (contact(5), contact(6));
    s.append(vec![entry(&a, "1", "x")]).await.expect("append");
    s.append(vec![
        entry(&b, "1", "x"),
        entry(&a, "2", "y"),
        entry(&Queue::System, "3", "z"),
    ])
    .await
    .expect("append");
    let ready = s.ready_contacts(Lane::Inbox, 10).await.expect("ready");
    let mut names: Vec<String> = ready.iter().map(|k| format!("c:{k}")).collect();
    names.sort();
    let mut want = [a.name(), b.name()];
    want.sort();
    assert_eq!(names, want);
    assert_eq!(
        s.ready_contacts(Lane::Inbox, 1).await.expect("ready").len(),
        1
    );
}
both_backends!(
    ready_contacts,
    contacts_with_events_are_ready_and_system_queues_are_not
);

async fn concurrent_appends_of_one_key_store_one_entry(backend: &Backend) {
    let s = open(backend).await;
    let a = contact(7);
    let results = join_all((0..32).map(|i| {
        let s = s.clone();
        let a = a.clone();
        async move { s.append(vec![entry(&a, "dup", &format!("copy {i}"))]).await }
    }))
    .await;
    let new = results
        .into_iter()
        .map(|r| r.expect("append"))
        .filter(|r| r[0] == Appended::New)
        .count();
    assert_eq!(new, 1);
    assert_eq!(s.read(&a, 100).await.expect("read").len(), 1);
    s.ping().await.expect("ping");
}
both_backends!(
    concurrent_dedup,
    concurrent_appends_of_one_key_store_one_entry
);

fn key(n: u8) -> ContactKey {
    ContactKey::parse(&format!("{:032x}", n as u128 + 0xdef)).expect("key")
}

const LEASE: Duration = Duration::from_secs(30);

async fn a_claim_is_exclusive_and_a_commit_is_all_or_nothing(backend: &Backend) {
    let s = open(backend).await;
    let k = key(1);
    let q = Queue::Contact(k.clone());
    s.append(vec![entry(&q, "1", "first"), entry(&q, "2", "second")])
        .await
        .expect("append");
    let claim = s
        .claim(Lane::Inbox, &k, "worker-a", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    assert_eq!(bodies(&claim.entries), ["first", "second"]);
    assert_eq!(claim.session, None);
    assert!(
        s.claim(Lane::Inbox, &k, "worker-b", LEASE, 10)
            .await
            .expect("claim")
            .is_none(),
        "held"
    );
    let done = s
        .commit(
            &claim,
            Commit {
                acked: vec![claim.entries[0].id.clone()],
                session: Some(b"session-1".to_vec()),
                session_ttl: Duration::from_secs(3600),
                outbox: vec![b"job-1".to_vec(), b"job-2".to_vec()],
                wake_at: None,
                window: None,
                deliveries: Vec::new(),
                consent: Vec::new(),
                profile: None,
                history: Vec::new(),
                profile_ttl: Duration::from_secs(3600),
                stats: Vec::new(),
            },
        )
        .await
        .expect("commit");
    assert_eq!(done, Committed::Done { inbox_left: 1 });
    assert_eq!(
        s.ready_contacts(Lane::Inbox, 10).await.expect("ready"),
        vec![k.clone()],
        "one entry left"
    );
    assert_eq!(
        s.ready_contacts(Lane::Outbox, 10).await.expect("ready"),
        vec![k.clone()]
    );
    assert_eq!(
        bodies(&s.read(&Queue::Outbox(k.clone()), 10).await.expect("read")),
        ["job-1", "job-2"]
    );

    // The commit released the lease; the next claim sees what it wrote.
    let claim = s
        .claim(Lane::Inbox, &k, "worker-b", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    assert_eq!(bodies(&claim.entries), ["second"]);
    assert_eq!(claim.session.as_deref(), Some(&b"session-1"[..]));
    let done = s
        .commit(
            &claim,
            Commit {
                acked: vec![claim.entries[0].id.clone()],
                session: None,
                session_ttl: Duration::from_secs(3600),
                outbox: vec![b"job-3".to_vec()],
                wake_at: None,
                window: None,
                deliveries: Vec::new(),
                consent: Vec::new(),
                profile: None,
                history: Vec::new(),
                profile_ttl: Duration::from_secs(3600),
                stats: Vec::new(),
            },
        )
        .await
        .expect("commit");
    assert_eq!(done, Committed::Done { inbox_left: 0 });
    assert!(
        s.ready_contacts(Lane::Inbox, 10)
            .await
            .expect("ready")
            .is_empty(),
        "drained"
    );
    let claim = s
        .claim(Lane::Inbox, &k, "worker-c", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    assert_eq!(claim.session, None, "the session was deleted");
    s.release(&claim).await.expect("release");
    assert_eq!(
        bodies(&s.read(&Queue::Outbox(k.clone()), 10).await.expect("read")),
        ["job-1", "job-2", "job-3"]
    );
}
both_backends!(
    claim_and_commit,
    a_claim_is_exclusive_and_a_commit_is_all_or_nothing
);

async fn an_expired_lease_cannot_commit(backend: &Backend) {
    let s = open(backend).await;
    let k = key(2);
    let q = Queue::Contact(k.clone());
    s.append(vec![entry(&q, "1", "only")])
        .await
        .expect("append");
    let slow = s
        .claim(Lane::Inbox, &k, "slow", Duration::from_millis(20), 10)
        .await
        .expect("claim")
        .expect("free");
    tokio::time::sleep(Duration::from_millis(60)).await;
    let fast = s
        .claim(Lane::Inbox, &k, "fast", LEASE, 10)
        .await
        .expect("claim")
        .expect("expired lease is free");
    let lost = s
        .commit(
            &slow,
            Commit {
                acked: vec![slow.entries[0].id.clone()],
                session: Some(b"stale".to_vec()),
                session_ttl: Duration::from_secs(60),
                outbox: vec![b"stale job".to_vec()],
                wake_at: None,
                window: None,
                deliveries: Vec::new(),
                consent: Vec::new(),
                profile: None,
                history: Vec::new(),
                profile_ttl: Duration::from_secs(3600),
                stats: Vec::new(),
            },
        )
        .await
        .expect("commit");
    assert_eq!(lost, Committed::LeaseLost);
    assert_eq!(
        bodies(&s.read(&q, 10).await.expect("read")),
        ["only"],
        "nothing was acked"
    );
    assert!(
        s.read(&Queue::Outbox(k.clone()), 10)
            .await
            .expect("read")
            .is_empty(),
        "nothing queued"
    );
    s.release(&fast).await.expect("release");
}
both_backends!(lease_lost, an_expired_lease_cannot_commit);

async fn a_message_arriving_during_a_claim_keeps_the_contact_ready(backend: &Backend) {
    let s = open(backend).await;
    let k = key(3);
    let q = Queue::Contact(k.clone());
    s.append(vec![entry(&q, "1", "one")]).await.expect("append");
    let claim = s
        .claim(Lane::Inbox, &k, "w", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    s.append(vec![entry(&q, "2", "two")]).await.expect("append");
    let done = s
        .commit(
            &claim,
            Commit {
                acked: vec![claim.entries[0].id.clone()],
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
            },
        )
        .await
        .expect("commit");
    assert_eq!(done, Committed::Done { inbox_left: 1 });
    assert_eq!(
        s.ready_contacts(Lane::Inbox, 10).await.expect("ready"),
        vec![k.clone()]
    );
}
both_backends!(
    arrival_during_claim,
    a_message_arriving_during_a_claim_keeps_the_contact_ready
);

async fn the_outbox_lane_sends_in_order_and_empties(backend: &Backend) {
    let s = open(backend).await;
    let k = key(4);
    let q = Queue::Contact(k.clone());
    s.append(vec![entry(&q, "1", "in")]).await.expect("append");
    let c = s
        .claim(Lane::Inbox, &k, "w", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    let commit = Commit {
        acked: vec![c.entries[0].id.clone()],
        session: None,
        session_ttl: Duration::from_secs(60),
        outbox: vec![b"a".to_vec(), b"b".to_vec()],
        wake_at: None,
        window: None,
        deliveries: Vec::new(),
        consent: Vec::new(),
        profile: None,
        history: Vec::new(),
        profile_ttl: Duration::from_secs(3600),
        stats: Vec::new(),
    };
    s.commit(&c, commit).await.expect("commit");
    let sender = s
        .claim(Lane::Outbox, &k, "sender-1", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    assert_eq!(bodies(&sender.entries), ["a", "b"]);
    assert!(
        s.claim(Lane::Outbox, &k, "sender-2", LEASE, 10)
            .await
            .expect("claim")
            .is_none()
    );
    assert!(
        s.finish(&sender, &sender.entries[0].id, accepted("job"))
            .await
            .expect("finish")
    );
    s.release(&sender).await.expect("release");
    assert_eq!(
        s.ready_contacts(Lane::Outbox, 10).await.expect("ready"),
        vec![k.clone()],
        "b is left"
    );
    let sender = s
        .claim(Lane::Outbox, &k, "sender-2", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    assert_eq!(bodies(&sender.entries), ["b"]);
    assert!(
        s.finish(&sender, &sender.entries[0].id, accepted("job"))
            .await
            .expect("finish")
    );
    s.release(&sender).await.expect("release");
    assert!(
        s.ready_contacts(Lane::Outbox, 10)
            .await
            .expect("ready")
            .is_empty()
    );
}
both_backends!(outbox_lane, the_outbox_lane_sends_in_order_and_empties);

async fn timers_fire_when_due_and_can_be_cancelled(backend: &Backend) {
    let s = open(backend).await;
    let k = key(5);
    let q = Queue::Contact(k.clone());
    s.append(vec![entry(&q, "1", "x")]).await.expect("append");
    let claim = s
        .claim(Lane::Inbox, &k, "w", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    let commit = Commit {
        acked: vec![claim.entries[0].id.clone()],
        session: Some(b"waiting".to_vec()),
        session_ttl: Duration::from_secs(60),
        outbox: Vec::new(),
        wake_at: Some(1_800_000_100),
        window: None,
        deliveries: Vec::new(),
        consent: Vec::new(),
        profile: None,
        history: Vec::new(),
        profile_ttl: Duration::from_secs(3600),
        stats: Vec::new(),
    };
    s.commit(&claim, commit).await.expect("commit");
    assert!(
        s.due_timers(Lane::Inbox, 1_800_000_099, 10)
            .await
            .expect("due")
            .is_empty()
    );
    assert_eq!(
        s.due_timers(Lane::Inbox, 1_800_000_100, 10)
            .await
            .expect("due"),
        vec![k.clone()]
    );
    let claim = s
        .claim(Lane::Inbox, &k, "w", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    let commit = Commit {
        acked: Vec::new(),
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
    };
    s.commit(&claim, commit).await.expect("commit");
    assert!(
        s.due_timers(Lane::Inbox, u64::MAX / 2, 10)
            .await
            .expect("due")
            .is_empty(),
        "cancelled"
    );
}
both_backends!(timers, timers_fire_when_due_and_can_be_cancelled);

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

async fn delivery_records_only_move_forward(backend: &Backend) {
    let s = open(backend).await;
    let k = key(20);
    queue_jobs(&s, &k, &["a"], None).await;
    let c = s
        .claim(Lane::Outbox, &k, "sender", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    assert!(
        s.finish(&c, &c.entries[0].id, accepted("job-a"))
            .await
            .expect("finish")
    );
    s.release(&c).await.expect("release");
    // read arrives before delivered; the late delivered changes nothing.
    status(&s, &k, record("job-a", DeliveryState::Read, 300)).await;
    status(&s, &k, record("job-a", DeliveryState::Delivered, 200)).await;
    let got = s.deliveries(&k).await.expect("deliveries");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].state, DeliveryState::Read);
    assert_eq!(got[0].at, 300);
    assert_eq!(
        got[0].kind.as_deref(),
        Some("text"),
        "fields of the accepted record are kept"
    );
    // Matched by wamid alone (no callback data).
    let by_wamid = Delivery {
        job: String::new(),
        wamid: Some("w-job-a".into()),
        code: Some(131050),
        ..record("", DeliveryState::Failed, 400)
    };
    status(&s, &k, by_wamid).await;
    let got = s.deliveries(&k).await.expect("deliveries");
    assert_eq!(got[0].state, DeliveryState::Failed);
    assert_eq!(got[0].code, Some(131050));
    // Failed is final.
    status(&s, &k, record("job-a", DeliveryState::Played, 500)).await;
    assert_eq!(
        s.deliveries(&k).await.expect("deliveries")[0].state,
        DeliveryState::Failed
    );
    // A status for a message we never sent, by an unknown wamid: ignored.
    let stray = Delivery {
        wamid: Some("unknown".into()),
        ..record("", DeliveryState::Sent, 600)
    };
    status(&s, &k, stray).await;
    assert_eq!(s.deliveries(&k).await.expect("deliveries").len(), 1);
}
both_backends!(delivery_records, delivery_records_only_move_forward);

async fn a_deferred_outbox_keeps_its_head_state_and_wakes_when_due(backend: &Backend) {
    let s = open(backend).await;
    let k = key(21);
    queue_jobs(&s, &k, &["a", "b"], Some(("pn-1", 1_000))).await;
    queue_jobs(&s, &k, &["c"], Some(("pn-1", 900))).await;
    assert_eq!(
        s.windows(&k).await.expect("windows"),
        vec![("pn-1".to_owned(), 1_000)],
        "the window only moves forward"
    );
    let c = s
        .claim(Lane::Outbox, &k, "sender", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    assert_eq!(c.head, None);
    s.defer(&c, Some(b"attempt-1".to_vec()), 5_000)
        .await
        .expect("defer");
    assert!(
        s.ready_contacts(Lane::Outbox, 10)
            .await
            .expect("ready")
            .is_empty(),
        "a deferred outbox is not ready"
    );
    assert!(
        s.due_timers(Lane::Outbox, 4_999, 10)
            .await
            .expect("due")
            .is_empty()
    );
    assert_eq!(
        s.due_timers(Lane::Outbox, 5_000, 10).await.expect("due"),
        vec![k.clone()]
    );
    // The lease was released: another sender takes it, with the head state.
    let c = s
        .claim(Lane::Outbox, &k, "sender-2", LEASE, 10)
        .await
        .expect("claim")
        .expect("released");
    assert_eq!(c.head.as_deref(), Some(&b"attempt-1"[..]));
    assert_eq!(bodies(&c.entries), ["a", "b", "c"]);
    // Finishing the head clears its state; releasing clears the timer.
    s.finish(&c, &c.entries[0].id, accepted("a"))
        .await
        .expect("finish");
    s.release(&c).await.expect("release");
    assert!(
        s.due_timers(Lane::Outbox, u64::MAX / 2, 10)
            .await
            .expect("due")
            .is_empty()
    );
    let c = s
        .claim(Lane::Outbox, &k, "sender", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    assert_eq!(c.head, None);
    assert_eq!(bodies(&c.entries), ["b", "c"]);
    // A paused number resumes: every deferred outbox is due at once.
    s.defer(&c, None, u64::MAX / 4).await.expect("defer");
    assert!(
        s.due_timers(Lane::Outbox, 10_000, 10)
            .await
            .expect("due")
            .is_empty()
    );
    s.wake_deferred().await.expect("wake");
    assert_eq!(
        s.due_timers(Lane::Outbox, 10_000, 10).await.expect("due"),
        vec![k.clone()]
    );
}
both_backends!(
    outbox_defer,
    a_deferred_outbox_keeps_its_head_state_and_wakes_when_due
);

async fn a_dead_letter_leaves_the_outbox_and_is_listed(backend: &Backend) {
    let s = open(backend).await;
    let k = key(22);
    queue_jobs(&s, &k, &["x", "y"], None).await;
    let c = s
        .claim(Lane::Outbox, &k, "sender", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    let dead = Finish {
        record: Delivery {
            code: Some(131000),
            attempts: Some(8),
            ..record("job-x", DeliveryState::Dead, 100)
        },
        dead_letter: Some(b"sealed-x".to_vec()),
        consent: None,
        also: Vec::new(),
        release: false,
        stats: Vec::new(),
    };
    assert!(s.finish(&c, &c.entries[0].id, dead).await.expect("finish"));
    s.release(&c).await.expect("release");
    let letters = s.dead_letters(10).await.expect("dead letters");
    assert!(
        letters
            .iter()
            .any(|d| d.contact == k && d.entry.sealed == b"sealed-x"),
        "listed"
    );
    let c = s
        .claim(Lane::Outbox, &k, "sender", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    assert_eq!(bodies(&c.entries), ["y"], "the next job is not blocked");
    let rec = s.deliveries(&k).await.expect("deliveries");
    assert_eq!(rec[0].state, DeliveryState::Dead);
    assert_eq!(rec[0].attempts, Some(8));
}
both_backends!(dead_letters, a_dead_letter_leaves_the_outbox_and_is_listed);

async fn a_job_is_finished_even_when_the_lease_was_lost(backend: &Backend) {
    let s = open(backend).await;
    let k = key(23);
    queue_jobs(&s, &k, &["a"], None).await;
    let slow = s
        .claim(Lane::Outbox, &k, "slow", Duration::from_millis(50), 10)
        .await
        .expect("claim")
        .expect("free");
    tokio::time::sleep(Duration::from_millis(120)).await;
    let fast = s
        .claim(Lane::Outbox, &k, "fast", LEASE, 10)
        .await
        .expect("claim")
        .expect("expired lease");
    // The slow sender's request was accepted: recording it must remove the
    // job, or the fast sender would send it again.
    assert!(
        !s.finish(&slow, &slow.entries[0].id, accepted("a"))
            .await
            .expect("finish"),
        "the lease is reported lost"
    );
    s.release(&fast).await.expect("release");
    assert!(
        s.read(&Queue::Outbox(k.clone()), 10)
            .await
            .expect("read")
            .is_empty()
    );
}
both_backends!(
    finish_after_lost_lease,
    a_job_is_finished_even_when_the_lease_was_lost
);

async fn a_finish_can_remove_earlier_jobs_and_release_the_claim(backend: &Backend) {
    let s = open(backend).await;
    let k = key(24);
    queue_jobs(&s, &k, &["receipt", "reply", "more"], None).await;
    let c = s
        .claim(Lane::Outbox, &k, "sender", LEASE, 2)
        .await
        .expect("claim")
        .expect("free");
    assert_eq!(bodies(&c.entries), ["receipt", "reply"]);
    // The reply's finish carries the read receipt's removal and, as the
    // claim's last, its release; a job is still queued, so the contact
    // stays ready.
    let mut done = accepted("reply");
    done.also = vec![c.entries[0].id.clone()];
    done.release = true;
    assert!(s.finish(&c, &c.entries[1].id, done).await.expect("finish"));
    assert!(
        s.ready_contacts(Lane::Outbox, 100)
            .await
            .expect("ready")
            .contains(&k),
        "still ready: one job is left"
    );
    let next = s
        .claim(Lane::Outbox, &k, "other", LEASE, 10)
        .await
        .expect("claim")
        .expect("released with the finish");
    assert_eq!(bodies(&next.entries), ["more"]);
    let mut last = accepted("more");
    last.release = true;
    assert!(
        s.finish(&next, &next.entries[0].id, last)
            .await
            .expect("finish")
    );
    assert!(
        !s.ready_contacts(Lane::Outbox, 100)
            .await
            .expect("ready")
            .contains(&k),
        "drained and released: no longer ready"
    );
    assert!(
        s.read(&Queue::Outbox(k.clone()), 10)
            .await
            .expect("read")
            .is_empty()
    );
    assert!(
        s.claim(Lane::Outbox, &k, "third", LEASE, 10)
            .await
            .expect("claim")
            .is_some(),
        "the lease was released"
    );
    let states: Vec<String> = s
        .deliveries(&k)
        .await
        .expect("deliveries")
        .into_iter()
        .map(|d| d.job)
        .collect();
    assert_eq!(states, ["more", "reply"], "a bare removal records nothing");
}
both_backends!(
    finish_also_and_release,
    a_finish_can_remove_earlier_jobs_and_release_the_claim
);

async fn rate_limits_and_breakers_are_shared(backend: &Backend) {
    let s = open(backend).await;
    let name = format!("pn:test-{}", uuid::Uuid::new_v4());
    // A burst of 3, then one per interval.
    for _ in 0..3 {
        let g = s.take_rate(&name, 10_000_000, 3, 1).await.expect("rate");
        assert_eq!((g.granted, g.wait_ms), (1, 0));
    }
    let g = s.take_rate(&name, 10_000_000, 3, 1).await.expect("rate");
    assert_eq!(g.granted, 0);
    assert!(
        g.wait_ms > 9_000 && g.wait_ms <= 10_000,
        "wait {}",
        g.wait_ms
    );
    // Several slots at once: as many as are free, never past the burst.
    let many = format!("pn:many-{}", uuid::Uuid::new_v4());
    let g = s.take_rate(&many, 10_000_000, 3, 2).await.expect("rate");
    assert_eq!(g.granted, 2);
    let g = s.take_rate(&many, 10_000_000, 3, 5).await.expect("rate");
    assert_eq!(g.granted, 1, "only one of the burst was left");
    let g = s.take_rate(&many, 10_000_000, 3, 5).await.expect("rate");
    assert_eq!(g.granted, 0);
    assert!(g.wait_ms > 9_000, "wait {}", g.wait_ms);
    let held = format!("pn:held-{}", uuid::Uuid::new_v4());
    s.hold_rate(&held, 60_000).await.expect("hold");
    let g = s.take_rate(&held, 1, 100, 1).await.expect("rate");
    assert!(g.granted == 0 && g.wait_ms > 59_000, "{g:?}");

    let number = format!("pn-{}", uuid::Uuid::new_v4());
    let b = Breaker {
        code: 190,
        reason: "HTTP 401, Meta error 190".into(),
        since: 1_000,
        probe_at: 1_060,
    };
    s.open_breaker(&number, b.clone()).await.expect("open");
    // Opening again keeps the first reason and probe time.
    s.open_breaker(
        &number,
        Breaker {
            probe_at: 9_999,
            ..b.clone()
        },
    )
    .await
    .expect("open");
    let open: Vec<_> = s.breakers().await.expect("breakers");
    assert!(open.contains(&(number.clone(), b.clone())));
    assert!(
        !s.take_probe(&number, 1_059, 1_120).await.expect("probe"),
        "too early"
    );
    let takers = join_all((0..10).map(|_| s.take_probe(&number, 1_060, 1_120))).await;
    assert_eq!(
        takers
            .into_iter()
            .filter(|t| *t.as_ref().expect("probe"))
            .count(),
        1,
        "exactly one prober"
    );
    s.close_breaker(Some(&number)).await.expect("close");
    assert!(
        !s.breakers()
            .await
            .expect("breakers")
            .iter()
            .any(|(n, _)| *n == number)
    );
    assert!(
        !s.take_probe(&number, u64::MAX / 2, 0).await.expect("probe"),
        "closed"
    );
}
both_backends!(rates_and_breakers, rate_limits_and_breakers_are_shared);

/// Redis forgets its scripts when it restarts (or on SCRIPT FLUSH): every
/// write that runs one loads it again and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_redis_forgetting_its_scripts() {
    let b = crate::helpers::redis();
    let Backend::Redis { url, .. } = &b.backend else {
        unreachable!("a Redis backend")
    };
    let s = open(&b.backend).await;
    let flush = || async {
        let client = redis::Client::open(url.as_str()).expect("url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut conn)
            .await
            .expect("flush");
    };
    let k = key(30);
    flush().await;
    queue_jobs(&s, &k, &["a"], Some(("pn-1", 5))).await;
    flush().await;
    let c = s
        .claim(Lane::Outbox, &k, "sender", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    assert_eq!(bodies(&c.entries), ["a"]);
    assert!(
        s.finish(&c, &c.entries[0].id, accepted("a"))
            .await
            .expect("finish")
    );
    flush().await;
    s.release(&c).await.expect("release");
    assert!(
        s.read(&Queue::Outbox(k.clone()), 10)
            .await
            .expect("read")
            .is_empty()
    );
}

async fn the_consent_ledger_keeps_every_change_in_order(backend: &Backend) {
    let s = open(backend).await;
    let k = key(31);
    let change = |granted: bool, at: u64, source: &str| whatsify::store::ConsentChange {
        purpose: "marketing".into(),
        granted,
        at,
        source: source.into(),
        policy_version: "1".into(),
        evidence: Some(format!("e{at}")),
    };
    queue_jobs(&s, &k, &["a"], None).await;
    // Given in a flow (with the worker's commit) …
    s.append(vec![entry(&Queue::Contact(k.clone()), "c1", "yes")])
        .await
        .expect("append");
    let c = s
        .claim(Lane::Inbox, &k, "w", LEASE, 10)
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
        deliveries: Vec::new(),
        consent: vec![change(true, 10, "flow")],
        profile: None,
        history: Vec::new(),
        profile_ttl: Duration::from_secs(3600),
        stats: Vec::new(),
    };
    s.commit(&c, commit).await.expect("commit");
    // … withdrawn as Meta answers a send with 131050 (with the sender's).
    let c = s
        .claim(Lane::Outbox, &k, "sender", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    let failed = Finish {
        record: Delivery {
            code: Some(131050),
            ..record("a", DeliveryState::Failed, 20)
        },
        dead_letter: None,
        consent: Some(change(false, 20, "meta:131050")),
        also: Vec::new(),
        release: false,
        stats: Vec::new(),
    };
    s.finish(&c, &c.entries[0].id, failed)
        .await
        .expect("finish");
    s.release(&c).await.expect("release");
    // … and given again by a START, recorded with the message it came in
    // (once, however often Meta delivers it).
    for _ in 0..2 {
        let mut start = entry(&Queue::Contact(k.clone()), "c2", "START");
        start.consent = Some(change(true, 30, "keyword"));
        s.append(vec![start]).await.expect("append");
    }
    assert_eq!(
        s.consent(&k).await.expect("ledger"),
        vec![
            change(true, 10, "flow"),
            change(false, 20, "meta:131050"),
            change(true, 30, "keyword")
        ]
    );
    assert!(s.consent(&key(32)).await.expect("ledger").is_empty());
}
both_backends!(
    consent_ledger,
    the_consent_ledger_keeps_every_change_in_order
);

async fn a_profile_outlives_the_session_and_expires_after_its_time(backend: &Backend) {
    let s = open(backend).await;
    let k = key(33);
    let commit = |c: &whatsify::store::Claim, profile: Option<&str>, ttl: u64| Commit {
        acked: c.entries.iter().map(|e| e.id.clone()).collect(),
        session: None,
        session_ttl: Duration::from_secs(60),
        outbox: Vec::new(),
        wake_at: None,
        window: None,
        deliveries: Vec::new(),
        consent: Vec::new(),
        profile: profile.map(|p| p.as_bytes().to_vec()),
        history: Vec::new(),
        profile_ttl: Duration::from_secs(ttl),
        stats: Vec::new(),
    };
    assert_eq!(s.profile(&k).await.expect("profile"), None);
    s.append(vec![entry(&Queue::Contact(k.clone()), "p1", "hi")])
        .await
        .expect("append");
    let c = s
        .claim(Lane::Inbox, &k, "w", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    assert_eq!(c.profile, None);
    s.commit(&c, commit(&c, Some("v1"), 3600))
        .await
        .expect("commit");
    // The session is gone (None), the profile stays and comes with a claim.
    s.append(vec![entry(&Queue::Contact(k.clone()), "p2", "again")])
        .await
        .expect("append");
    let c = s
        .claim(Lane::Inbox, &k, "w", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    assert_eq!(
        (c.session.clone(), c.profile.clone()),
        (None, Some(b"v1".to_vec()))
    );
    // `None` leaves it as it is; a new one replaces it, with its own time.
    s.commit(&c, commit(&c, None, 3600)).await.expect("commit");
    assert_eq!(s.profile(&k).await.expect("profile"), Some(b"v1".to_vec()));
    s.append(vec![entry(&Queue::Contact(k.clone()), "p3", "bye")])
        .await
        .expect("append");
    let c = s
        .claim(Lane::Inbox, &k, "w", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    s.commit(&c, commit(&c, Some("v2"), 1))
        .await
        .expect("commit");
    assert_eq!(s.profile(&k).await.expect("profile"), Some(b"v2".to_vec()));
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(s.profile(&k).await.expect("profile"), None, "past its time");
}
both_backends!(
    profiles,
    a_profile_outlives_the_session_and_expires_after_its_time
);

fn audit_event(kind: &str, at: u64) -> whatsify::privacy::audit::Event {
    whatsify::privacy::audit::Event {
        at,
        kind: kind.into(),
        contact: Some("c0ffee".into()),
        actor: whatsify::privacy::audit::Actor::Customer,
        detail: None,
    }
}

async fn the_audit_log_appends_only_after_its_head(backend: &Backend) {
    use whatsify::privacy::audit::{Chain, GENESIS, record};
    let s = open(backend).await;
    let chain = Chain::new(&whatsify::config::Key32::new([9; 32]));
    assert_eq!(s.audit_head().await.expect("head"), (0, GENESIS.to_owned()));
    let first = chain.link(1, GENESIS, audit_event("a", 1));
    assert!(s.audit_append(&first).await.expect("append"));
    // A writer that read the head before that append loses and retries.
    let stale = chain.link(1, GENESIS, audit_event("b", 2));
    assert!(!s.audit_append(&stale).await.expect("append"));
    let wrong_prev = chain.link(2, GENESIS, audit_event("b", 2));
    assert!(!s.audit_append(&wrong_prev).await.expect("append"));
    // Concurrent writers all get in, once each, in one chain.
    let writes = (0..20).map(|i| {
        let s = s.clone();
        let chain = chain.clone();
        async move { record(s.as_ref(), &chain, audit_event("c", 10 + i)).await }
    });
    for r in join_all(writes).await {
        r.expect("recorded");
    }
    let entries = s.audit_entries(1, 1000).await.expect("entries");
    assert_eq!(entries.len(), 21);
    assert_eq!(chain.verify(&entries), Ok(()));
    let head = s.audit_head().await.expect("head");
    assert_eq!(head, (21, entries[20].hash.clone()));
    assert_eq!(s.audit_entries(20, 10).await.expect("tail").len(), 2);
}
both_backends!(audit_log, the_audit_log_appends_only_after_its_head);

/// An entry removed from the embedded store's file behind its back breaks
/// the chain at that point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_audit_entry_is_detected_in_the_embedded_store() {
    use whatsify::privacy::audit::{Chain, record};
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Backend::Embedded(dir.path().join("data"));
    let chain = Chain::new(&whatsify::config::Key32::new([9; 32]));
    {
        let s = open(&backend).await;
        for i in 0..3 {
            record(s.as_ref(), &chain, audit_event("x", i))
                .await
                .expect("recorded");
        }
    }
    // The store's writer lets go of the file once the store is dropped.
    let file = dir.path().join("data/whatsify.redb");
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
    let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("audit");
    let txn = db.begin_write().expect("write");
    txn.open_table(table)
        .expect("table")
        .remove(2)
        .expect("remove");
    txn.commit().expect("commit");
    drop(db);
    let s = open(&backend).await;
    let entries = s.audit_entries(1, 100).await.expect("entries");
    assert_eq!(entries.len(), 2);
    assert_eq!(chain.verify(&entries), Err(3), "broken where the entry was");
}

async fn old_message_history_is_purged(backend: &Backend) {
    let s = open(backend).await;
    let k = key(34);
    let write = async |dedup: &str, items: &[&str]| {
        s.append(vec![entry(&Queue::Contact(k.clone()), dedup, "x")])
            .await
            .expect("append");
        let c = s
            .claim(Lane::Inbox, &k, "w", LEASE, 10)
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
            deliveries: Vec::new(),
            consent: Vec::new(),
            profile: None,
            history: items.iter().map(|i| i.as_bytes().to_vec()).collect(),
            profile_ttl: Duration::from_secs(3600),
            stats: Vec::new(),
        };
        s.commit(&c, commit).await.expect("commit");
    };
    let texts = async || -> Vec<String> {
        s.history(&k, 100)
            .await
            .expect("history")
            .into_iter()
            .map(|(_, b)| String::from_utf8_lossy(&b).into_owned())
            .collect()
    };
    write("h1", &["old-1", "old-2"]).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let cutoff = whatsify::store::now_ms();
    tokio::time::sleep(Duration::from_millis(30)).await;
    write("h2", &["new-1"]).await;
    // Nothing is older than a cutoff before it all.
    s.purge_history(cutoff - 10_000, 100).await.expect("purge");
    assert_eq!(texts().await, ["old-1", "old-2", "new-1"]);
    // Entries written before the cutoff go; later ones stay.
    assert!(s.purge_history(cutoff, 100).await.expect("purge") >= 1);
    assert_eq!(texts().await, ["new-1"]);
    // The contact's place in the index moved to what is left.
    s.purge_history(cutoff, 100).await.expect("purge");
    assert_eq!(texts().await, ["new-1"]);
    s.purge_history(whatsify::store::now_ms() + 1, 100)
        .await
        .expect("purge");
    assert!(texts().await.is_empty());
    assert_eq!(
        s.purge_history(whatsify::store::now_ms() + 1, 100)
            .await
            .expect("purge"),
        0,
        "nothing left to look at"
    );
}
both_backends!(history_purge, old_message_history_is_purged);

fn keyed(queue: &Queue, dedup: &str, wrapped: &str, fresh: bool) -> InboxEntry {
    InboxEntry {
        key: Some(whatsify::store::EntryKey {
            wrapped: wrapped.as_bytes().to_vec(),
            fresh,
            ttl: Duration::from_secs(3600),
        }),
        ..entry(queue, dedup, dedup)
    }
}

/// An entry is stored only under the contact's data key: a fresh key when
/// it has none, else the stored one; anything else is refused untouched.
/// Keys are made once, rewrapped only from the value read, listed page by
/// page, and destroyed with the contact.
async fn entries_are_stored_only_under_the_contact_s_data_key(backend: &Backend) {
    let s = open(backend).await;
    let q = contact(40);
    let Queue::Contact(c) = q.clone() else {
        unreachable!()
    };
    let r = s
        .append(vec![
            keyed(&q, "e1", "k1", false),
            keyed(&q, "e2", "k1", true),
            keyed(&q, "e3", "k2", false),
            keyed(&q, "e4", "k2", true),
            keyed(&q, "e5", "k1", false),
        ])
        .await
        .expect("append");
    assert_eq!(
        r,
        [
            Appended::KeyMismatch,
            Appended::New,
            Appended::KeyMismatch,
            Appended::KeyMismatch,
            Appended::New
        ]
    );
    assert_eq!(bodies(&s.read(&q, 10).await.expect("read")), ["e2", "e5"]);
    // A refused entry left no de-duplication mark.
    let r = s
        .append(vec![keyed(&q, "e1", "k1", false)])
        .await
        .expect("append");
    assert_eq!(r, [Appended::New]);
    assert_eq!(s.data_key(&c).await.expect("key"), Some(b"k1".to_vec()));
    assert_eq!(
        s.create_data_key(&c, b"k9".to_vec(), Duration::from_secs(60))
            .await
            .expect("create"),
        b"k1"
    );
    let fresh = ContactKey::parse(&format!("{:032x}", 0xfee1u128)).expect("key");
    assert_eq!(
        s.create_data_key(&fresh, b"k7".to_vec(), Duration::from_secs(60))
            .await
            .expect("create"),
        b"k7"
    );
    assert!(!s.replace_data_key(&c, b"kx", b"k3").await.expect("replace"));
    assert!(s.replace_data_key(&c, b"k1", b"k3").await.expect("replace"));
    assert_eq!(s.data_key(&c).await.expect("key"), Some(b"k3".to_vec()));

    let mut seen = Vec::new();
    let mut cursor = None;
    for _ in 0..1000 {
        let (page, next) = s.data_keys(cursor, 1).await.expect("page");
        seen.extend(page);
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [(c.clone(), b"k3".to_vec()), (fresh.clone(), b"k7".to_vec())]
    );

    s.erase(&c, 1).await.expect("erase");
    assert_eq!(s.data_key(&c).await.expect("key"), None);
    let r = s
        .append(vec![
            keyed(&q, "e6", "k3", false),
            keyed(&q, "e7", "k4", true),
        ])
        .await
        .expect("append");
    assert_eq!(r, [Appended::KeyMismatch, Appended::New]);
}
both_backends!(
    data_keys,
    entries_are_stored_only_under_the_contact_s_data_key
);

/// The embedded store's purge (Redis expires keys itself): each kind of
/// record goes when its time is up, and not before.
#[tokio::test]
async fn the_embedded_purge_removes_what_is_past_its_time() {
    let b = crate::helpers::embedded();
    let s = open(&b.backend).await;
    let k = key(50);
    let now = whatsify::store::now_secs();
    queue_jobs(&s, &k, &["x"], Some(("pn-1", now))).await;
    let c = s
        .claim(Lane::Outbox, &k, "sender", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    let dead = Finish {
        dead_letter: Some(b"sealed-x".to_vec()),
        ..Finish::record(record("job-x", DeliveryState::Dead, now))
    };
    s.finish(&c, &c.entries[0].id, dead).await.expect("finish");
    s.append(vec![entry(&Queue::Contact(k.clone()), "in-2", "in")])
        .await
        .expect("append");
    let c = s
        .claim(Lane::Inbox, &k, "w", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    let commit = Commit {
        session: Some(b"session".to_vec()),
        profile: Some(b"profile".to_vec()),
        profile_ttl: Duration::from_secs(10 * 86_400),
        stats: vec![("messages_in".to_owned(), 1)],
        ..ack_all(&c)
    };
    s.commit(&c, commit).await.expect("commit");
    s.create_data_key(&k, b"wrapped".to_vec(), Duration::from_secs(12 * 86_400))
        .await
        .expect("key");
    let today = whatsify::store::stats::today();
    let day = 86_400;

    assert_eq!(s.purge_expired(now + 10).await.expect("purge"), 0);
    assert_eq!(s.purge_expired(now + 120).await.expect("purge"), 1);
    assert_eq!(s.session(&k).await.expect("session"), None);
    assert!(!s.windows(&k).await.expect("windows").is_empty());
    assert_eq!(s.purge_expired(now + 3 * day).await.expect("purge"), 1);
    assert!(s.windows(&k).await.expect("windows").is_empty());
    assert!(s.profile(&k).await.expect("profile").is_some());
    assert!(!s.deliveries(&k).await.expect("records").is_empty());
    // The delivery record, the dead letters, the profile and the data key.
    assert_eq!(s.purge_expired(now + 31 * day).await.expect("purge"), 4);
    assert!(s.deliveries(&k).await.expect("records").is_empty());
    assert!(s.dead_letters(10).await.expect("dead").is_empty());
    assert_eq!(s.purge_expired(now + 31 * day).await.expect("purge"), 0);
    assert_eq!(
        s.stats(std::slice::from_ref(&today))
            .await
            .expect("stats")
            .len(),
        1,
        "statistics outlive the contact's data"
    );
    assert_eq!(s.purge_expired(now + 401 * day).await.expect("purge"), 1);
    assert!(
        s.stats(std::slice::from_ref(&today))
            .await
            .expect("stats")
            .is_empty()
    );
}

/// A worker or sender that claimed a contact before it was erased writes
/// nothing afterwards: its data key is gone, so its commit or finish would
/// bring back data sealed under a destroyed key.
async fn nothing_is_written_under_an_erased_contact_s_key(backend: &Backend) {
    let s = open(backend).await;
    let q = contact(41);
    let Queue::Contact(c) = q.clone() else {
        unreachable!()
    };
    s.append(vec![keyed(&q, "m1", "k1", true)])
        .await
        .expect("append");
    let claim = s
        .claim(Lane::Inbox, &c, "w", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    assert_eq!(claim.data_key.as_deref(), Some(&b"k1"[..]));
    s.erase(&c, 1).await.expect("erase");
    let commit = Commit {
        session: Some(b"session".to_vec()),
        outbox: vec![b"job".to_vec()],
        window: Some(("pn".into(), 5)),
        profile: Some(b"profile".to_vec()),
        history: vec![b"said".to_vec()],
        ..ack_all(&claim)
    };
    // The lease may or may not have survived the erasure: either way the
    // commit is refused.
    let _ = s.commit(&claim, commit).await;
    assert_eq!(s.profile(&c).await.expect("profile"), None);
    assert_eq!(s.session(&c).await.expect("session"), None);
    assert!(s.history(&c, 10).await.expect("history").is_empty());
    assert!(s.windows(&c).await.expect("windows").is_empty());
    assert!(
        s.read(&Queue::Outbox(c.clone()), 10)
            .await
            .expect("outbox")
            .is_empty()
    );

    // A sender's claim from before the erasure.
    let k = key(42);
    queue_jobs(&s, &k, &["x"], None).await;
    s.create_data_key(&k, b"k9".to_vec(), Duration::from_secs(60))
        .await
        .expect("key");
    let sender = s
        .claim(Lane::Outbox, &k, "sender", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    assert!(sender.data_key.is_some());
    s.erase(&k, 1).await.expect("erase");
    let done = Finish {
        dead_letter: Some(b"letter".to_vec()),
        ..Finish::record(record("job-x", DeliveryState::Dead, 100))
    };
    assert!(
        !s.finish(&sender, &sender.entries[0].id, done)
            .await
            .expect("finish")
    );
    assert!(s.deliveries(&k).await.expect("records").is_empty());
    assert!(
        s.dead_letters(10)
            .await
            .expect("dead")
            .iter()
            .all(|d| d.contact != k)
    );
}
both_backends!(erased_key, nothing_is_written_under_an_erased_contact_s_key);
