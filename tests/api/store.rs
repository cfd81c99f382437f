//! The store conformance suite: the same cases against both backends,
//! through the `Store` trait only.

use std::sync::Arc;

use futures_util::future::join_all;
use secrecy::SecretString;
use std::time::Duration;
use whatsify::config::{Backend as Kind, StoreSettings};
use whatsify::domain::ContactKey;

use whatsify::store::{self, Appended, Commit, Committed, InboxEntry, Lane, Queue, Store};

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
    assert!(s.sent(&sender, &sender.entries[0].id).await.expect("sent"));
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
    assert!(s.sent(&sender, &sender.entries[0].id).await.expect("sent"));
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
    };
    s.commit(&claim, commit).await.expect("commit");
    assert!(
        s.due_timers(1_800_000_099, 10)
            .await
            .expect("due")
            .is_empty()
    );
    assert_eq!(
        s.due_timers(1_800_000_100, 10).await.expect("due"),
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
    };
    s.commit(&claim, commit).await.expect("commit");
    assert!(
        s.due_timers(u64::MAX / 2, 10)
            .await
            .expect("due")
            .is_empty(),
        "cancelled"
    );
}
both_backends!(timers, timers_fire_when_due_and_can_be_cancelled);
