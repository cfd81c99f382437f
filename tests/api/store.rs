//! The store conformance suite: the same cases against both backends,
//! through the `Store` trait only.

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

/// Only the holder renews a lease; renewed, it outlives its first term;
/// not renewed, it lapses and stays lost to the old holder.
async fn only_the_holder_renews_a_lease(backend: &Backend) {
    use whatsify::store::lease::Held;
    let s = open(backend).await;
    // Two contacts in different shards, renewed in one call.
    let (a, b) = (
        key(5),
        ContactKey::parse(&format!("0001{:028x}", 7)).expect("key"),
    );
    let lease = Duration::from_secs(2);
    for k in [&a, &b] {
        s.claim(Lane::Outbox, k, "holder", lease, 10)
            .await
            .expect("claim")
            .expect("free");
    }
    let held = |k: &ContactKey, owner: &str| Held {
        lane: Lane::Outbox,
        contact: k.clone(),
        owner: owner.to_owned(),
    };
    assert!(s.renew(&[], lease).await.expect("renew").is_empty());
    let both = [held(&a, "holder"), held(&a, "other"), held(&b, "holder")];
    assert_eq!(
        s.renew(&both, lease).await.expect("renew"),
        [true, false, true]
    );
    // Renewed every half second for longer than the first term: held.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            s.renew(&[held(&a, "holder")], lease).await.expect("renew"),
            [true]
        );
        assert!(
            s.claim(Lane::Outbox, &a, "thief", lease, 10)
                .await
                .expect("claim")
                .is_none(),
            "a renewed lease is still held"
        );
    }
    // No longer renewed: it lapses, another takes it, and the old holder
    // cannot renew it back.
    tokio::time::sleep(lease + Duration::from_millis(500)).await;
    let thief = s
        .claim(Lane::Outbox, &a, "thief", lease, 10)
        .await
        .expect("claim")
        .expect("a lapsed lease is free");
    assert_eq!(
        s.renew(&[held(&a, "holder")], lease).await.expect("renew"),
        [false]
    );
    s.release(&thief).await.expect("release");
}
both_backends!(lease_renewal, only_the_holder_renews_a_lease);

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

async fn console_sessions_are_kept_until_they_expire_or_end(backend: &Backend) {
    let s = open(backend).await;
    let now = whatsify::clock::now_secs();
    let (a, b) = (
        format!("a-{}", uuid::Uuid::new_v4()),
        format!("b-{}", uuid::Uuid::new_v4()),
    );
    assert_eq!(s.console_session(&a, now).await.expect("get"), None);
    s.put_console_session(&a, b"one".to_vec(), now + 3600)
        .await
        .expect("put");
    s.put_console_session(&b, b"two".to_vec(), now + 3600)
        .await
        .expect("put");
    assert_eq!(
        s.console_session(&a, now).await.expect("get").as_deref(),
        Some(&b"one"[..])
    );
    // Replaced whole.
    s.put_console_session(&a, b"three".to_vec(), now + 3600)
        .await
        .expect("put");
    assert_eq!(
        s.console_session(&a, now).await.expect("get").as_deref(),
        Some(&b"three"[..])
    );
    s.end_console_session(&a).await.expect("end");
    assert_eq!(s.console_session(&a, now).await.expect("get"), None);
    assert_eq!(
        s.console_session(&b, now).await.expect("get").as_deref(),
        Some(&b"two"[..]),
        "ending one leaves the others"
    );
    // One that has expired is gone.
    s.put_console_session(&b, b"two".to_vec(), now + 1)
        .await
        .expect("put");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        s.console_session(&b, whatsify::clock::now_secs())
            .await
            .expect("get"),
        None
    );
    // A change of the admin credential ends them all at once.
    let now = whatsify::clock::now_secs();
    for k in [&a, &b] {
        s.put_console_session(k, b"live".to_vec(), now + 3600)
            .await
            .expect("put");
    }
    s.end_console_sessions().await.expect("end all");
    for k in [&a, &b] {
        assert_eq!(s.console_session(k, now).await.expect("get"), None);
    }
    s.end_console_sessions().await.expect("ending none is fine");
}
both_backends!(
    console_sessions,
    console_sessions_are_kept_until_they_expire_or_end
);

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

/// At ingress, a consent that changes nothing is not recorded: the entry
/// is stored (`NewSameConsent`) but the ledger, the opt-out counter and
/// the campaign attribution get nothing; a change is recorded again.
async fn a_consent_that_changes_nothing_is_not_recorded(backend: &Backend) {
    let s = open(backend).await;
    let k = key(41);
    let q = Queue::Contact(k.clone());
    let at = whatsify::clock::now_secs() - 100;
    let with = |dedup: &str, granted: bool, at: u64| InboxEntry {
        consent: Some(ConsentChange {
            at,
            ..marketing(granted, "keyword")
        }),
        ..entry(&q, dedup, "STOP or START")
    };
    let got = s
        .append(vec![
            with("s1", false, at),
            with("s2", false, at),
            with("s3", false, at + 5),
        ])
        .await
        .expect("append");
    assert_eq!(
        got,
        [
            Appended::New,
            Appended::NewSameConsent,
            Appended::NewSameConsent
        ]
    );
    assert_eq!(s.read(&q, 10).await.expect("read").len(), 3, "all stored");
    let ledger = || async { s.consent(&k).await.expect("ledger") };
    assert_eq!(ledger().await.len(), 1);
    // A START changes it (a repeated STOP of its second would not be on
    // record: the worker restores it, see `Profile::withdrew`); its
    // repeats, in that second or later, do not.
    let got = s
        .append(vec![
            with("g1", true, at + 5),
            with("g2", true, at + 5),
            with("g3", true, at + 6),
        ])
        .await
        .expect("append");
    assert_eq!(
        got,
        [
            Appended::New,
            Appended::NewSameConsent,
            Appended::NewSameConsent
        ]
    );
    assert_eq!(ledger().await.len(), 2);
    assert!(whatsify::privacy::consent::granted(
        &ledger().await,
        "marketing"
    ));
    // A STOP in the second of the START is recorded, and wins.
    let got = s
        .append(vec![with("s4", false, at + 5)])
        .await
        .expect("append");
    assert_eq!(got, [Appended::New]);
    assert!(!whatsify::privacy::consent::granted(
        &ledger().await,
        "marketing"
    ));
    let today = whatsify::store::stats::today();
    let counts = s.stats(std::slice::from_ref(&today)).await.expect("stats");
    let count = |name: &str| {
        counts
            .get(&today)
            .and_then(|c| c.get(name).copied())
            .unwrap_or(0)
    };
    assert_eq!(count("opt_outs"), 2, "{counts:?}");
    assert_eq!(count("opt_ins"), 1, "{counts:?}");
}
both_backends!(
    consent_unchanged,
    a_consent_that_changes_nothing_is_not_recorded
);

async fn the_consent_ledger_keeps_every_change_in_order(backend: &Backend) {
    let s = open(backend).await;
    let k = key(31);
    let change = |granted: bool, at: u64, source: &str| whatsify::domain::consent::ConsentChange {
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

fn audit_event(kind: &str, at: u64) -> whatsify::domain::audit::AuditEvent {
    whatsify::domain::audit::AuditEvent {
        at,
        kind: kind.into(),
        contact: Some("c0ffee".into()),
        actor: whatsify::domain::audit::Actor::Customer,
        detail: None,
    }
}

async fn the_audit_log_appends_only_after_its_head(backend: &Backend) {
    use whatsify::privacy::audit::{Chain, record};
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

/// The log reads newest first below a sequence number; a run appends in
/// one go only after the head; the request index holds every open
/// request with its confirmation, closes a group on its completion, moves
/// a lapsed unconfirmed one out, and keeps the newest closed entries.
async fn the_audit_log_pages_newest_first_and_indexes_open_requests(backend: &Backend) {
    use whatsify::privacy::audit::{Chain, record};
    use whatsify::store::audit_index::CLOSED_KEEP;
    let s = open(backend).await;
    let chain = Chain::new(&whatsify::config::Key32::new([9; 32]));
    assert!(s.audit_page(None, 10).await.expect("page").is_empty());
    record(s.as_ref(), &chain, audit_event("export_request", 1))
        .await
        .expect("recorded");
    let run = audit_run(
        s.as_ref(),
        &chain,
        &[
            ("consent_given", "c1"),
            ("erasure_request", "c2"),
            ("erasure_confirmed", "c2"),
            ("export_completed", "c0ffee"),
            ("erasure_request", "c3"),
            ("erasure_confirmed", "c4"),
        ],
    )
    .await;
    assert_eq!(
        s.audit_head().await.expect("head"),
        (7, run[5].hash.clone())
    );
    let seqs = |p: Vec<whatsify::domain::audit::Entry>| p.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(s.audit_page(None, 3).await.expect("page")), [7, 6, 5]);
    assert_eq!(
        seqs(s.audit_page(Some(5), 3).await.expect("page")),
        [4, 3, 2]
    );
    assert_eq!(seqs(s.audit_page(Some(2), 3).await.expect("page")), [1]);
    assert!(s.audit_page(Some(1), 3).await.expect("page").is_empty());
    assert_eq!(s.audit_page(Some(99), 1).await.expect("page")[0], run[5]);
    // A run that does not follow the head writes nothing.
    let stale = vec![chain.link(7, GENESIS, audit_event("x", 1))];
    assert!(!s.audit_append_run(&stale).await.expect("run"));
    assert_eq!(s.audit_head().await.expect("head").0, 7);

    let index = s.audit_requests().await.expect("index");
    assert_eq!(seqs(index.open.clone()), [3, 4, 6], "c2 confirmed, c3 open");
    assert_eq!(
        seqs(index.closed.clone()),
        [1, 5],
        "c0ffee's export and its completion"
    );
    // Confirmed, or not the group's newest: stays open.
    assert!(!s.audit_request_lapsed(&index.open[0]).await.expect("lapse"));
    assert!(s.audit_request_lapsed(&index.open[2]).await.expect("lapse"));
    assert!(
        !s.audit_request_lapsed(&index.open[2]).await.expect("lapse"),
        "once"
    );
    let index = s.audit_requests().await.expect("index");
    assert_eq!(seqs(index.open.clone()), [3, 4]);
    assert_eq!(seqs(index.closed.clone()), [1, 5, 6]);
    // c2's erasure completes: its group closes.
    audit_run(s.as_ref(), &chain, &[("erasure_completed", "c2")]).await;
    let index = s.audit_requests().await.expect("index");
    assert!(index.open.is_empty(), "{index:?}");
    assert_eq!(seqs(index.closed.clone()), [1, 3, 4, 5, 6, 8]);
    // Only the newest closed entries are kept.
    let many: Vec<(&str, &str)> = (0..CLOSED_KEEP / 2 + 1)
        .flat_map(|_| [("export_request", "c5"), ("export_completed", "c5")])
        .collect();
    let run = audit_run(s.as_ref(), &chain, &many).await;
    let index = s.audit_requests().await.expect("index");
    assert_eq!(index.closed.len(), CLOSED_KEEP);
    assert_eq!(index.closed.last(), run.last());
    assert_eq!(s.audit_head().await.expect("head").0, 8 + many.len() as u64);
}
both_backends!(
    audit_pages,
    the_audit_log_pages_newest_first_and_indexes_open_requests
);

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

/// A log written before the request index was kept (its requests nowhere
/// in the index) gets the index rebuilt from the log on first use, with
/// requests closed after the upgrade closed.
async fn a_log_from_before_the_request_index_has_it_rebuilt(backend: &Backend) {
    use whatsify::privacy::audit::Chain;
    let s = open(backend).await;
    let chain = Chain::new(&whatsify::config::Key32::new([9; 32]));
    audit_run(
        s.as_ref(),
        &chain,
        &[
            ("export_request", "c1"),
            ("erasure_request", "c2"),
            ("export_completed", "c1"),
            ("export_request", "c3"),
            ("consent_given", "c4"),
        ],
    )
    .await;
    assert!(s.audit_requests().await.expect("index").complete);
    let s = forget_the_request_index(backend, s).await;
    let index = s.audit_requests().await.expect("index");
    assert!(!index.complete && index.open.is_empty(), "{index:?}");
    // After the upgrade: c3's request, from before it, completes.
    audit_run(s.as_ref(), &chain, &[("export_completed", "c3")]).await;
    assert!(!s.audit_requests().await.expect("index").complete);

    let found = whatsify::privacy::audit_view::requests(s.as_ref(), 200, 600)
        .await
        .expect("requests");
    let states: Vec<(u64, &str)> = found.iter().map(|r| (r.seq, r.state)).collect();
    assert_eq!(states, [(1, "completed"), (2, "open"), (4, "completed")]);
    let index = s.audit_requests().await.expect("index");
    assert!(index.complete);
    let seqs = |p: &[whatsify::domain::audit::Entry]| p.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(&index.open), [2]);
    assert_eq!(seqs(&index.closed), [1, 3, 4, 6]);
    // And it is kept from there on.
    audit_run(s.as_ref(), &chain, &[("erasure_declined", "c2")]).await;
    let index = s.audit_requests().await.expect("index");
    assert!(index.open.is_empty());
    assert_eq!(seqs(&index.closed), [1, 2, 3, 4, 6, 7]);
}
both_backends!(
    audit_index_rebuilt,
    a_log_from_before_the_request_index_has_it_rebuilt
);

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
    drop(s);

    // The newest entry cut off: the stored head no longer matches.
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
    txn.open_table(table)
        .expect("table")
        .remove(3)
        .expect("remove");
    txn.commit().expect("commit");
    drop(db);
    let s = open(&backend).await;
    let filter = whatsify::privacy::audit_view::Filter::default();
    let page = whatsify::privacy::audit_view::page(s.as_ref(), &chain, None, &filter, 10)
        .await
        .expect("page");
    assert_eq!(page.chain.head_matches, Some(false), "{:?}", page.chain);
    assert_eq!(page.chain.broken_at, Some(2), "{:?}", page.chain);
    assert!(!page.chain.intact);
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
    let cutoff = whatsify::clock::now_ms();
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
    s.purge_history(whatsify::clock::now_ms() + 1, 100)
        .await
        .expect("purge");
    assert!(texts().await.is_empty());
    assert_eq!(
        s.purge_history(whatsify::clock::now_ms() + 1, 100)
            .await
            .expect("purge"),
        0,
        "nothing left to look at"
    );
}
both_backends!(history_purge, old_message_history_is_purged);

/// `recent_history` gives the newest entries only, oldest first (what a
/// handoff shows), whatever the history's length.
async fn recent_history_is_the_newest_entries_in_order(backend: &Backend) {
    let s = open(backend).await;
    let k = key(35);
    assert!(s.recent_history(&k, 5).await.expect("read").is_empty());
    for round in 0..3 {
        s.append(vec![entry(
            &Queue::Contact(k.clone()),
            &format!("r{round}"),
            "x",
        )])
        .await
        .expect("append");
        let c = s
            .claim(Lane::Inbox, &k, "w", LEASE, 10)
            .await
            .expect("claim")
            .expect("free");
        let items: Vec<Vec<u8>> = (0..4)
            .map(|i| format!("m{}", round * 4 + i).into_bytes())
            .collect();
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
            history: items,
            profile_ttl: Duration::from_secs(3600),
            stats: Vec::new(),
        };
        s.commit(&c, commit).await.expect("commit");
    }
    let texts = |v: Vec<(u64, Vec<u8>)>| -> Vec<String> {
        v.into_iter()
            .map(|(_, b)| String::from_utf8_lossy(&b).into_owned())
            .collect()
    };
    assert_eq!(
        texts(s.recent_history(&k, 5).await.expect("read")),
        ["m7", "m8", "m9", "m10", "m11"]
    );
    assert_eq!(texts(s.recent_history(&k, 1).await.expect("read")), ["m11"]);
    assert!(s.recent_history(&k, 0).await.expect("read").is_empty());
    let all = s.history(&k, 100).await.expect("read");
    assert_eq!(all.len(), 12);
    assert_eq!(s.recent_history(&k, 100).await.expect("read"), all);
    assert!(
        s.recent_history(&key(36), 5)
            .await
            .expect("read")
            .is_empty()
    );
}
both_backends!(
    recent_history,
    recent_history_is_the_newest_entries_in_order
);

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
    let now = whatsify::clock::now_secs();
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

/// A job appended straight to an outbox (an integration event) is stored
/// once under the outbox's data key, found ready by a sweep, and claimed
/// in order like any outbox job.
async fn a_job_appended_to_an_outbox_is_ready_for_the_senders(backend: &Backend) {
    let s = open(backend).await;
    let k = key(44);
    let q = Queue::Outbox(k.clone());
    let r = s
        .append(vec![
            keyed(&q, "ev-1", "hk", true),
            keyed(&q, "ev-2", "hk", false),
            keyed(&q, "ev-1", "hk", false),
            keyed(&q, "ev-3", "other", false),
        ])
        .await
        .expect("append");
    assert_eq!(
        r,
        [
            Appended::New,
            Appended::New,
            Appended::Duplicate,
            Appended::KeyMismatch
        ]
    );
    assert_eq!(s.data_key(&k).await.expect("key"), Some(b"hk".to_vec()));
    let now_ms = whatsify::clock::now_ms();
    let (ready, _) = s.sweep(Lane::Outbox, now_ms, 100).await.expect("sweep");
    assert!(ready.contains(&k), "ready for the senders");
    let (inbox_ready, _) = s
        .sweep(Lane::Inbox, now_ms / 1000, 100)
        .await
        .expect("sweep");
    assert!(!inbox_ready.contains(&k), "not work for the workers");
    let claim = s
        .claim(Lane::Outbox, &k, "sender", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    assert_eq!(bodies(&claim.entries), ["ev-1", "ev-2"]);
    assert_eq!(claim.data_key.as_deref(), Some(&b"hk"[..]));
}
both_backends!(
    outbox_append,
    a_job_appended_to_an_outbox_is_ready_for_the_senders
);

/// A rewrap (master key rotation) changes the wrapping, not the key: a
/// worker's and a sender's claim taken before it still commit, finish and
/// release at once, and the new wrapping stays. A key that is really
/// another (erased and made again) still refuses them.
async fn a_claim_from_before_a_rewrap_still_writes(backend: &Backend) {
    let s = open(backend).await;
    let q = contact(43);
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
    assert!(s.replace_data_key(&c, b"k1", b"k1'").await.expect("rewrap"));
    let commit = Commit {
        outbox: vec![b"job".to_vec()],
        ..ack_all(&claim)
    };
    assert!(matches!(
        s.commit(&claim, commit).await.expect("commit"),
        Committed::Done { .. }
    ));
    assert_eq!(s.data_key(&c).await.expect("key"), Some(b"k1'".to_vec()));
    let other = s
        .claim(Lane::Inbox, &c, "other", LEASE, 10)
        .await
        .expect("claim")
        .expect("the commit released the contact");
    s.release(&other).await.expect("release");

    // A sender's claim, then a second rotation.
    let sender = s
        .claim(Lane::Outbox, &c, "sender", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    assert_eq!(sender.data_key.as_deref(), Some(&b"k1'"[..]));
    assert!(
        s.replace_data_key(&c, b"k1'", b"k1''")
            .await
            .expect("rewrap")
    );
    let mut done = Finish::record(record("job-1", DeliveryState::Sent, 100));
    done.release = true;
    assert!(
        s.finish(&sender, &sender.entries[0].id, done)
            .await
            .expect("finish")
    );
    assert_eq!(s.deliveries(&c).await.expect("records").len(), 1);
    assert!(
        s.read(&Queue::Outbox(c.clone()), 10)
            .await
            .expect("outbox")
            .is_empty()
    );
    assert!(
        s.claim(Lane::Outbox, &c, "sender-2", LEASE, 10)
            .await
            .expect("claim")
            .is_some(),
        "the finish released the contact"
    );
    assert_eq!(s.data_key(&c).await.expect("key"), Some(b"k1''".to_vec()));

    // Erased and keyed again: the old wrapping is no longer accepted.
    s.append(vec![keyed(&q, "m2", "k1''", false)])
        .await
        .expect("append");
    let stale = s
        .claim(Lane::Inbox, &c, "w2", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    s.erase(&c, 1).await.expect("erase");
    s.append(vec![keyed(&q, "m3", "k2", true)])
        .await
        .expect("append");
    let commit = Commit {
        profile: Some(b"profile".to_vec()),
        ..ack_all(&stale)
    };
    let _ = s.commit(&stale, commit).await;
    assert_eq!(s.profile(&c).await.expect("profile"), None);
    assert_eq!(s.data_key(&c).await.expect("key"), Some(b"k2".to_vec()));
}
both_backends!(rewrapped_key, a_claim_from_before_a_rewrap_still_writes);

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
fn campaign_skip(c: &ContactKey, reason: &str) -> CampaignSend {
    CampaignSend {
        contact: c.clone(),
        job: Err(reason.to_owned()),
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
    }
}

/// A campaign is stored scheduled with its audience in order; each
/// contact is queued once (a second dispatch finds its mark), in one job
/// in its outbox, counted `queued`; the audience shrinks from the front.
async fn a_campaign_queues_each_contact_once(backend: &Backend) {
    let s = open(backend).await;
    new_campaign(&s, "cq1", 3).await;
    let stored = s.campaign("cq1").await.expect("campaign").expect("stored");
    assert_eq!(
        stored.status,
        whatsify::domain::campaign::CampaignStatus::Scheduled
    );
    assert_eq!(stored.record, b"{\"id\":\"cq1\"}");
    assert!(s.campaign("nope").await.expect("campaign").is_none());
    assert_eq!(s.campaign_left("cq1").await.expect("left"), 3);
    assert_eq!(
        s.campaign_audience("cq1", 2).await.expect("audience"),
        [b"m0".to_vec(), b"m1".to_vec()]
    );
    assert!(
        s.campaign_audience("cq1", 0)
            .await
            .expect("audience")
            .is_empty()
    );

    let k = key(100);
    let (done, left) = s
        .campaign_dispatch(
            "cq1",
            "d",
            vec![campaign_job(&k, "job-1", "k1", true)],
            1,
            whatsify::clock::now_ms(),
        )
        .await
        .expect("dispatch");
    assert_eq!((done, left), (vec![Dispatched::Done], 2));
    assert_eq!(
        s.campaign_audience("cq1", 10).await.expect("audience"),
        [b"m1".to_vec(), b"m2".to_vec()],
        "taken from the front"
    );
    assert_eq!(
        s.data_key(&k).await.expect("key"),
        Some(b"k1".to_vec()),
        "the fresh key is stored"
    );
    // The same contact again (a retried batch): nothing is done.
    let (done, left) = s
        .campaign_dispatch(
            "cq1",
            "d",
            vec![campaign_job(&k, "job-1 again", "k1", false)],
            1,
            whatsify::clock::now_ms(),
        )
        .await
        .expect("dispatch");
    assert_eq!((done, left), (vec![Dispatched::Already], 1));
    assert_eq!(
        bodies(&s.read(&Queue::Outbox(k.clone()), 10).await.expect("read")),
        ["job-1"]
    );
    assert!(
        s.ready_contacts(Lane::Outbox, 100)
            .await
            .expect("ready")
            .contains(&k),
        "the contact is ready for a sender"
    );
    assert_eq!(nonzero(&s, "cq1").await, counts(&[("queued", 1)]));
    // Another campaign is another turn.
    new_campaign(&s, "cq2", 1).await;
    let (done, left) = s
        .campaign_dispatch(
            "cq2",
            "d",
            vec![campaign_job(&k, "job-2", "k1", false)],
            1,
            whatsify::clock::now_ms(),
        )
        .await
        .expect("dispatch");
    assert_eq!((done, left), (vec![Dispatched::Done], 0));
    assert_eq!(
        bodies(&s.read(&Queue::Outbox(k.clone()), 10).await.expect("read")),
        ["job-1", "job-2"]
    );
    assert_eq!(nonzero(&s, "cq1").await, counts(&[("queued", 1)]));
    assert_eq!(s.campaign_left("cq2").await.expect("left"), 0);
    assert!(
        s.campaign_audience("cq2", 10)
            .await
            .expect("audience")
            .is_empty()
    );
}
both_backends!(campaign_queue_once, a_campaign_queues_each_contact_once);

/// Campaigns are listed oldest first (not by name).
async fn campaigns_are_listed_oldest_first(backend: &Backend) {
    let s = open(backend).await;
    assert!(s.campaigns().await.expect("campaigns").is_empty());
    for id in ["zz", "mm", "aa"] {
        new_campaign(&s, id, 1).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all = s.campaigns().await.expect("campaigns");
    let ids: Vec<&str> = all.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["zz", "mm", "aa"]);
    assert!(
        all.iter()
            .all(|c| c.status == whatsify::domain::campaign::CampaignStatus::Scheduled)
    );
}
both_backends!(campaign_order, campaigns_are_listed_oldest_first);

/// A skipped contact is marked (a second dispatch finds it) and counted by
/// its reason; nothing is queued for it.
async fn skips_are_counted_by_reason(backend: &Backend) {
    let s = open(backend).await;
    new_campaign(&s, "cs", 4).await;
    let (a, b, c) = (key(101), key(102), key(103));
    let (done, left) = s
        .campaign_dispatch(
            "cs",
            "d",
            vec![
                campaign_skip(&a, "no_consent"),
                campaign_skip(&b, "opted_out"),
                campaign_skip(&c, "no_consent"),
            ],
            3,
            whatsify::clock::now_ms(),
        )
        .await
        .expect("dispatch");
    assert_eq!((done, left), (vec![Dispatched::Done; 3], 1));
    let (done, _) = s
        .campaign_dispatch(
            "cs",
            "d",
            vec![
                campaign_skip(&a, "no_consent"),
                campaign_job(&b, "j", "k", true),
            ],
            0,
            whatsify::clock::now_ms(),
        )
        .await
        .expect("dispatch");
    assert_eq!(done, [Dispatched::Already, Dispatched::Already]);
    assert_eq!(
        nonzero(&s, "cs").await,
        counts(&[("skipped:no_consent", 2), ("skipped:opted_out", 1)])
    );
    for k in [&a, &b, &c] {
        assert!(
            s.read(&Queue::Outbox(k.clone()), 10)
                .await
                .expect("read")
                .is_empty()
        );
        assert_eq!(s.data_key(k).await.expect("key"), None, "no key was made");
    }
    assert_eq!(s.campaign_left("cs").await.expect("left"), 1);
}
both_backends!(campaign_skips, skips_are_counted_by_reason);

/// A job sealed under a key that is not the contact's is refused untouched
/// (the other sends of the batch are done), and then the audience is not
/// trimmed: the dispatcher reads the batch again.
async fn a_key_mismatch_keeps_the_audience(backend: &Backend) {
    let s = open(backend).await;
    new_campaign(&s, "ck", 3).await;
    let (a, b, c) = (key(104), key(105), key(106));
    s.create_data_key(&a, b"stored".to_vec(), Duration::from_secs(3600))
        .await
        .expect("key");
    let (done, left) = s
        .campaign_dispatch(
            "ck",
            "d",
            vec![
                campaign_job(&a, "for a", "other", false),
                campaign_skip(&b, "unknown"),
                // No key stored and not a fresh one: refused too.
                campaign_job(&c, "for c", "old", false),
            ],
            3,
            whatsify::clock::now_ms(),
        )
        .await
        .expect("dispatch");
    assert_eq!(
        (done, left),
        (
            vec![
                Dispatched::KeyMismatch,
                Dispatched::Done,
                Dispatched::KeyMismatch
            ],
            3
        ),
        "nothing taken from the audience"
    );
    assert!(
        s.read(&Queue::Outbox(a.clone()), 10)
            .await
            .expect("read")
            .is_empty()
    );
    assert_eq!(
        s.data_key(&a).await.expect("key"),
        Some(b"stored".to_vec()),
        "the stored key is kept"
    );
    assert_eq!(s.data_key(&c).await.expect("key"), None);
    assert_eq!(nonzero(&s, "ck").await, counts(&[("skipped:unknown", 1)]));
    // Sealed again under the stored key: done, and now the batch goes.
    let (done, left) = s
        .campaign_dispatch(
            "ck",
            "d",
            vec![
                campaign_job(&a, "for a", "stored", false),
                campaign_skip(&b, "unknown"),
                campaign_job(&c, "for c", "new", true),
            ],
            3,
            whatsify::clock::now_ms(),
        )
        .await
        .expect("dispatch");
    assert_eq!(
        (done, left),
        (
            vec![Dispatched::Done, Dispatched::Already, Dispatched::Done],
            0
        )
    );
    assert_eq!(
        bodies(&s.read(&Queue::Outbox(a.clone()), 10).await.expect("read")),
        ["for a"]
    );
    assert_eq!(s.data_key(&c).await.expect("key"), Some(b"new".to_vec()));
    assert_eq!(
        nonzero(&s, "ck").await,
        counts(&[("queued", 2), ("skipped:unknown", 1)])
    );
    // An erased contact's key is gone: a job under it is refused.
    s.erase(&a, 1).await.expect("erase");
    new_campaign(&s, "ck2", 1).await;
    let (done, left) = s
        .campaign_dispatch(
            "ck2",
            "d",
            vec![campaign_job(&a, "again", "stored", false)],
            1,
            whatsify::clock::now_ms(),
        )
        .await
        .expect("dispatch");
    assert_eq!((done, left), (vec![Dispatched::KeyMismatch], 1));
}
both_backends!(campaign_key_mismatch, a_key_mismatch_keeps_the_audience);

/// A campaign job's records move its counters: accepted takes it off
/// `queued` and counts `sent`; delivered and read count once each, however
/// often (or late, or by wamid alone) they come.
async fn delivery_records_count_a_campaign_s_progress_once(backend: &Backend) {
    let s = open(backend).await;
    new_campaign(&s, "cd", 2).await;
    let (a, b) = (key(107), key(108));
    s.campaign_dispatch(
        "cd",
        "d",
        vec![
            campaign_job(&a, "ja", "ka", true),
            campaign_job(&b, "jb", "kb", true),
        ],
        2,
        whatsify::clock::now_ms(),
    )
    .await
    .expect("dispatch");
    assert_eq!(nonzero(&s, "cd").await, counts(&[("queued", 2)]));
    finish_first(&s, &a, campaign_accepted("cmp.cd.1")).await;
    assert_eq!(
        nonzero(&s, "cd").await,
        counts(&[("queued", 1), ("sent", 1)])
    );
    // Sent: the contact has still had its turn.
    let (done, _) = s
        .campaign_dispatch(
            "cd",
            "d",
            vec![campaign_job(&a, "ja again", "ka", false)],
            0,
            whatsify::clock::now_ms(),
        )
        .await
        .expect("dispatch");
    assert_eq!(done, [Dispatched::Already]);
    let at = whatsify::clock::now_secs();
    status(&s, &a, record("cmp.cd.1", DeliveryState::Delivered, at + 1)).await;
    status(&s, &a, record("cmp.cd.1", DeliveryState::Delivered, at + 1)).await;
    assert_eq!(counter(&s, "cd", "delivered").await, 1);
    status(&s, &a, record("cmp.cd.1", DeliveryState::Read, at + 2)).await;
    let by_wamid = Delivery {
        wamid: Some("w-cmp.cd.1".into()),
        ..record("", DeliveryState::Read, at + 3)
    };
    status(&s, &a, by_wamid).await;
    status(&s, &a, record("cmp.cd.1", DeliveryState::Delivered, at + 4)).await;
    assert_eq!(
        nonzero(&s, "cd").await,
        counts(&[("delivered", 1), ("queued", 1), ("read", 1), ("sent", 1)])
    );
    // A read that comes before any delivered counts both.
    finish_first(&s, &b, campaign_accepted("cmp.cd.2")).await;
    status(&s, &b, record("cmp.cd.2", DeliveryState::Read, at + 5)).await;
    assert_eq!(
        nonzero(&s, "cd").await,
        counts(&[("delivered", 2), ("read", 2), ("sent", 2)])
    );
    assert_eq!(
        counter(&s, "cd", "queued").await,
        0,
        "nothing is queued any more"
    );
    // Records of other jobs count nowhere.
    queue_jobs(&s, &a, &["plain"], None).await;
    finish_first(&s, &a, campaign_accepted("reply-1")).await;
    assert_eq!(
        nonzero(&s, "cd").await,
        counts(&[("delivered", 2), ("read", 2), ("sent", 2)])
    );
}
both_backends!(
    campaign_progress,
    delivery_records_count_a_campaign_s_progress_once
);

/// A job that ends without being sent counts why: `failed:<code>`,
/// `failed:<state>` with no code, `skipped:<reason>` for consent, and
/// `cancelled`; a later status changes nothing.
async fn a_campaign_job_that_ends_unsent_counts_why(backend: &Backend) {
    let s = open(backend).await;
    new_campaign(&s, "cf", 4).await;
    let ks = [key(109), key(110), key(111), key(112)];
    let sends = ks
        .iter()
        .enumerate()
        .map(|(i, k)| campaign_job(k, &format!("j{i}"), &format!("k{i}"), true))
        .collect();
    s.campaign_dispatch("cf", "d", sends, 4, whatsify::clock::now_ms())
        .await
        .expect("dispatch");
    let now = whatsify::clock::now_secs();
    let failed = Delivery {
        code: Some(131026),
        attempts: Some(1),
        ..record("cmp.cf.1", DeliveryState::Failed, now)
    };
    finish_first(&s, &ks[0], failed).await;
    finish_first(&s, &ks[1], record("cmp.cf.2", DeliveryState::Expired, now)).await;
    let no_consent = Delivery {
        reason: Some("opted_out".into()),
        ..record("cmp.cf.3", DeliveryState::NoConsent, now)
    };
    finish_first(&s, &ks[2], no_consent).await;
    finish_first(
        &s,
        &ks[3],
        record("cmp.cf.4", DeliveryState::Cancelled, now),
    )
    .await;
    let want = counts(&[
        ("cancelled", 1),
        ("failed:131026", 1),
        ("failed:expired", 1),
        ("skipped:opted_out", 1),
    ]);
    assert_eq!(nonzero(&s, "cf").await, want);
    assert_eq!(counter(&s, "cf", "queued").await, 0);
    status(
        &s,
        &ks[0],
        record("cmp.cf.1", DeliveryState::Delivered, now + 1),
    )
    .await;
    assert_eq!(nonzero(&s, "cf").await, want, "a final state is kept");
    // A sent job that fails later counts both.
    new_campaign(&s, "cg", 1).await;
    let k = key(113);
    s.campaign_dispatch(
        "cg",
        "d",
        vec![campaign_job(&k, "j", "k", true)],
        1,
        whatsify::clock::now_ms(),
    )
    .await
    .expect("dispatch");
    finish_first(&s, &k, campaign_accepted("cmp.cg.1")).await;
    let failed = Delivery {
        code: Some(131049),
        ..record("cmp.cg.1", DeliveryState::Failed, now + 1)
    };
    status(&s, &k, failed).await;
    assert_eq!(
        nonzero(&s, "cg").await,
        counts(&[("failed:131049", 1), ("sent", 1)])
    );
}
both_backends!(campaign_unsent, a_campaign_job_that_ends_unsent_counts_why);

/// A marketing opt-out within a day of a campaign message counts for that
/// campaign, once, whether it comes with an inbox entry or in a commit;
/// one recorded by the support team does not.
async fn an_opt_out_after_a_campaign_message_counts_once(backend: &Backend) {
    let s = open(backend).await;
    new_campaign(&s, "co", 3).await;
    let (a, b, c) = (key(114), key(115), key(116));
    let sends = vec![
        campaign_job(&a, "ja", "ka", true),
        campaign_job(&b, "jb", "kb", true),
        campaign_skip(&c, "no_consent"),
    ];
    s.campaign_dispatch("co", "d", sends, 3, whatsify::clock::now_ms())
        .await
        .expect("dispatch");
    // Not yet sent: an opt-out counts for no campaign (nor the opt-in
    // after it, a few seconds later).
    let stop = |k: &ContactKey, dedup: &str| InboxEntry {
        consent: Some(marketing(false, "keyword")),
        ..entry(&Queue::Contact(k.clone()), dedup, "STOP")
    };
    let earlier = |granted: bool, ago: u64| InboxEntry {
        consent: Some(whatsify::domain::consent::ConsentChange {
            at: whatsify::clock::now_secs() - ago,
            ..marketing(granted, "keyword")
        }),
        ..entry(
            &Queue::Contact(a.clone()),
            &format!("early-{granted}"),
            "STOP",
        )
    };
    s.append(vec![earlier(false, 10)]).await.expect("append");
    s.append(vec![earlier(true, 5)]).await.expect("append");
    assert_eq!(counter(&s, "co", "opt_outs").await, 0);
    finish_first(&s, &a, campaign_accepted("cmp.co.1")).await;
    finish_first(&s, &b, campaign_accepted("cmp.co.2")).await;
    // An opt-out recorded by the support team is not the campaign's doing.
    s.append_consent(&b, marketing(false, "admin"))
        .await
        .expect("consent");
    assert_eq!(counter(&s, "co", "opt_outs").await, 0);
    // The customer's own STOP is, once (a second STOP changes nothing).
    s.append(vec![stop(&a, "stop-1")]).await.expect("append");
    s.append(vec![stop(&a, "stop-1")]).await.expect("duplicate");
    s.append(vec![stop(&a, "stop-2")]).await.expect("append");
    assert_eq!(counter(&s, "co", "opt_outs").await, 1);
    // An opt-in counts nothing.
    s.append(vec![InboxEntry {
        consent: Some(marketing(true, "keyword")),
        ..entry(&Queue::Contact(b.clone()), "start", "START")
    }])
    .await
    .expect("append");
    assert_eq!(counter(&s, "co", "opt_outs").await, 1);
    // In a commit (a flow's opt-out step, the Stop button), once.
    let claim = s
        .claim(Lane::Inbox, &b, "w", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    let commit = Commit {
        consent: vec![marketing(false, "button"), marketing(false, "flow")],
        ..ack_all(&claim)
    };
    s.commit(&claim, commit).await.expect("commit");
    assert_eq!(counter(&s, "co", "opt_outs").await, 2);
    let claim = s
        .claim(Lane::Inbox, &b, "w", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    let commit = Commit {
        consent: vec![marketing(false, "button")],
        ..ack_all(&claim)
    };
    s.commit(&claim, commit).await.expect("commit");
    assert_eq!(counter(&s, "co", "opt_outs").await, 2);
    // A skipped contact was sent nothing.
    s.append(vec![stop(&c, "stop-c")]).await.expect("append");
    assert_eq!(counter(&s, "co", "opt_outs").await, 2);
}
both_backends!(
    campaign_opt_outs,
    an_opt_out_after_a_campaign_message_counts_once
);

/// An erased contact's queued campaign job will not go: it counts as
/// skipped (`suppressed`); a job already recorded, or a skip, is left as
/// counted.
async fn erasing_a_contact_with_a_queued_campaign_job_counts_it_suppressed(backend: &Backend) {
    let s = open(backend).await;
    new_campaign(&s, "ce", 3).await;
    let (a, b, c) = (key(117), key(118), key(119));
    let sends = vec![
        campaign_job(&a, "ja", "ka", true),
        campaign_job(&b, "jb", "kb", true),
        campaign_skip(&c, "no_consent"),
    ];
    s.campaign_dispatch("ce", "d", sends, 3, whatsify::clock::now_ms())
        .await
        .expect("dispatch");
    finish_first(&s, &b, campaign_accepted("cmp.ce.2")).await;
    assert_eq!(counter(&s, "ce", "dispatched").await, 3);
    assert_eq!(
        nonzero(&s, "ce").await,
        counts(&[("queued", 1), ("sent", 1), ("skipped:no_consent", 1)])
    );
    for k in [&a, &b, &c] {
        s.erase(k, 5).await.expect("erase");
    }
    assert_eq!(counter(&s, "ce", "queued").await, 0);
    assert_eq!(
        nonzero(&s, "ce").await,
        counts(&[
            ("sent", 1),
            ("skipped:no_consent", 1),
            ("skipped:suppressed", 1)
        ])
    );
    assert!(
        s.read(&Queue::Outbox(a.clone()), 10)
            .await
            .expect("read")
            .is_empty()
    );
    // Erasing again counts nothing more.
    s.erase(&a, 6).await.expect("erase");
    assert_eq!(counter(&s, "ce", "skipped:suppressed").await, 1);
    // The marks went with the contact (the dispatcher skips a suppressed
    // contact itself).
    let (done, _) = s
        .campaign_dispatch(
            "ce",
            "d",
            vec![campaign_skip(&a, "suppressed")],
            0,
            whatsify::clock::now_ms(),
        )
        .await
        .expect("dispatch");
    assert_eq!(done, [Dispatched::Done]);
    assert_eq!(counter(&s, "ce", "skipped:suppressed").await, 2);
}
both_backends!(
    campaign_erase,
    erasing_a_contact_with_a_queued_campaign_job_counts_it_suppressed
);

/// A status moves only from one of the statuses named.
async fn a_campaign_status_is_compared_and_set(backend: &Backend) {
    use whatsify::domain::campaign::CampaignStatus::{Cancelled, Dispatched, Running, Scheduled};
    let s = open(backend).await;
    new_campaign(&s, "cst", 1).await;
    new_campaign(&s, "cst2", 1).await;
    let active = async || -> Vec<String> {
        s.active_campaigns()
            .await
            .expect("active")
            .into_iter()
            .map(|c| c.id)
            .collect()
    };
    assert_eq!(active().await, ["cst", "cst2"]);
    assert!(
        s.set_campaign_status("cst", &[Scheduled], Running)
            .await
            .expect("status")
    );
    assert_eq!(active().await, ["cst", "cst2"], "running is active");
    assert!(
        !s.set_campaign_status("cst", &[Scheduled], Running)
            .await
            .expect("status"),
        "no longer scheduled"
    );
    assert!(
        !s.set_campaign_status("cst", &[], Cancelled)
            .await
            .expect("status")
    );
    assert!(
        s.set_campaign_status("cst", &[Scheduled, Running], Cancelled)
            .await
            .expect("status")
    );
    assert!(
        !s.set_campaign_status("cst", &[Scheduled, Running], Dispatched)
            .await
            .expect("status")
    );
    let c = s.campaign("cst").await.expect("campaign").expect("stored");
    assert_eq!(c.status, Cancelled);
    assert_eq!(
        active().await,
        ["cst2"],
        "a cancelled campaign is not active"
    );
    assert_eq!(
        s.campaign_left("cst").await.expect("left"),
        0,
        "a cancelled campaign's audience is dropped"
    );
    assert_eq!(s.campaign_left("cst2").await.expect("left"), 1);
    assert!(
        s.set_campaign_status("cst2", &[Scheduled], Dispatched)
            .await
            .expect("status")
    );
    assert!(active().await.is_empty());
    assert_eq!(s.campaigns().await.expect("all").len(), 2);
    assert_eq!(c.record, b"{\"id\":\"cst\"}", "the record is kept");
    assert!(
        !s.set_campaign_status("unknown", &[Scheduled], Running)
            .await
            .expect("status")
    );
    assert!(s.campaign("unknown").await.expect("campaign").is_none());
}
both_backends!(campaign_status, a_campaign_status_is_compared_and_set);

/// One dispatcher at a time holds a campaign; its holder renews it; an
/// expired lease is free.
async fn a_campaign_lease_is_exclusive(backend: &Backend) {
    let s = open(backend).await;
    assert!(s.campaign_lease("cl", "a", LEASE).await.expect("lease"));
    assert!(!s.campaign_lease("cl", "b", LEASE).await.expect("lease"));
    assert!(
        s.campaign_lease("cl", "a", LEASE).await.expect("lease"),
        "renewed"
    );
    assert!(
        s.campaign_lease("other", "b", LEASE).await.expect("lease"),
        "per campaign"
    );
    let takers = join_all((0..10).map(|i| {
        let s = s.clone();
        async move {
            s.campaign_lease("race", &format!("o{i}"), LEASE)
                .await
                .expect("lease")
        }
    }))
    .await;
    assert_eq!(takers.iter().filter(|t| **t).count(), 1);
    let short = Duration::from_millis(50);
    assert!(s.campaign_lease("cx", "a", short).await.expect("lease"));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        s.campaign_lease("cx", "b", LEASE).await.expect("lease"),
        "expired"
    );
    assert!(!s.campaign_lease("cx", "a", LEASE).await.expect("lease"));
}
both_backends!(campaign_lease, a_campaign_lease_is_exclusive);

/// What the dispatcher reads about each contact, in order: data key,
/// profile, session, consent ledger and suppression.
async fn briefs_tell_the_dispatcher_about_each_contact(backend: &Backend) {
    let s = open(backend).await;
    let (known, erased, stranger) = (key(120), key(121), key(122));
    s.append(vec![InboxEntry {
        consent: Some(marketing(true, "keyword")),
        ..keyed(&Queue::Contact(known.clone()), "in-1", "kk", true)
    }])
    .await
    .expect("append");
    let claim = s
        .claim(Lane::Inbox, &known, "w", LEASE, 10)
        .await
        .expect("claim")
        .expect("free");
    let commit = Commit {
        session: Some(b"session".to_vec()),
        profile: Some(b"profile".to_vec()),
        consent: vec![marketing(false, "button")],
        ..ack_all(&claim)
    };
    s.commit(&claim, commit).await.expect("commit");
    s.append(vec![keyed(
        &Queue::Contact(erased.clone()),
        "in-2",
        "ke",
        true,
    )])
    .await
    .expect("append");
    s.erase(&erased, 77).await.expect("erase");

    assert!(s.briefs(&[]).await.expect("briefs").is_empty());
    let briefs = s
        .briefs(&[stranger.clone(), known.clone(), erased.clone()])
        .await
        .expect("briefs");
    assert_eq!(briefs.len(), 3);
    let b = &briefs[0];
    assert!(b.data_key.is_none() && b.profile.is_none() && b.session.is_none());
    assert!(b.consent.is_empty() && b.suppressed.is_none());
    let b = &briefs[1];
    assert_eq!(b.data_key.as_deref(), Some(&b"kk"[..]));
    assert_eq!(b.profile.as_deref(), Some(&b"profile"[..]));
    assert_eq!(b.session.as_deref(), Some(&b"session"[..]));
    let ledger: Vec<(bool, &str)> = b
        .consent
        .iter()
        .map(|c| (c.granted, c.source.as_str()))
        .collect();
    assert_eq!(
        ledger,
        [(true, "keyword"), (false, "button")],
        "oldest first"
    );
    assert_eq!(b.suppressed, None);
    let b = &briefs[2];
    assert_eq!(b.suppressed, Some(77));
    assert!(b.data_key.is_none() && b.consent.is_empty());
}
both_backends!(
    campaign_briefs,
    briefs_tell_the_dispatcher_about_each_contact
);

/// The embedded store's purge: campaign marks when their time is up (the
/// contact could then be dispatched again), the last campaign a day after
/// its message, and a campaign 400 days after its creation.
#[tokio::test]
async fn the_embedded_purge_removes_campaign_marks_and_old_campaigns() {
    let b = crate::helpers::embedded();
    let s = open(&b.backend).await;
    new_campaign(&s, "cp", 3).await;
    let (a, skipped) = (key(123), key(124));
    let job = CampaignSend {
        ttl: Duration::from_secs(60),
        ..campaign_job(&a, "ja", "ka", true)
    };
    let skip = CampaignSend {
        ttl: Duration::from_secs(60),
        ..campaign_skip(&skipped, "no_consent")
    };
    s.campaign_dispatch("cp", "d", vec![job, skip], 2, whatsify::clock::now_ms())
        .await
        .expect("dispatch");
    finish_first(&s, &a, campaign_accepted("cmp.cp.1")).await;
    let now = whatsify::clock::now_secs();
    let day = 86_400;
    assert_eq!(s.purge_expired(now + 10).await.expect("purge"), 0);
    // The two marks, and the data key made with them (kept as long).
    assert_eq!(s.purge_expired(now + 120).await.expect("purge"), 3);
    // The last campaign, a day after its message.
    assert_eq!(s.purge_expired(now + 2 * day).await.expect("purge"), 1);
    // The delivery record.
    assert_eq!(s.purge_expired(now + 31 * day).await.expect("purge"), 1);
    assert!(s.campaign("cp").await.expect("campaign").is_some());
    assert_eq!(s.campaign_left("cp").await.expect("left"), 1);
    // The campaign (its audience left and its counters with it).
    assert_eq!(s.purge_expired(now + 401 * day).await.expect("purge"), 1);
    assert!(s.campaign("cp").await.expect("campaign").is_none());
    assert!(s.campaigns().await.expect("campaigns").is_empty());
    assert_eq!(s.campaign_left("cp").await.expect("left"), 0);
    assert!(s.campaign_counts("cp").await.expect("counts").is_empty());
}

/// A dispatcher that stalled past its lease drops no audience entry: the
/// next holder read the same ones (what the first did is `Already` for
/// it) and drops them itself.
async fn only_the_lease_holder_drops_audience_entries(backend: &Backend) {
    let s = open(backend).await;
    new_campaign(&s, "cf2", 3).await;
    let a = key(131);
    let (done, left) = s
        .campaign_dispatch(
            "cf2",
            "stalled",
            vec![campaign_skip(&a, "no_consent")],
            1,
            whatsify::clock::now_ms(),
        )
        .await
        .expect("dispatch");
    assert_eq!(
        done,
        [Dispatched::Done],
        "the contact's turn is still taken"
    );
    assert_eq!(left, 3, "not the holder: nothing dropped");
    let (done, left) = s
        .campaign_dispatch(
            "cf2",
            "d",
            vec![campaign_skip(&a, "no_consent")],
            1,
            whatsify::clock::now_ms(),
        )
        .await
        .expect("dispatch");
    assert_eq!(done, [Dispatched::Already]);
    assert_eq!(left, 2, "the holder drops it");
    assert_eq!(counter(&s, "cf2", "skipped:no_consent").await, 1);
}
both_backends!(
    campaign_lease_fence,
    only_the_lease_holder_drops_audience_entries
);

/// Contact links (one customer known by a number and by a business-scoped
/// user id): resolved in one call with whether each key has a data key;
/// an alias's first link wins; a stale index entry is ignored; erasing the
/// canonical contact erases its aliases (their data too, and onto the
/// suppression list) and drops the links; erasing again is harmless.
async fn contact_links_resolve_and_go_with_the_contact(backend: &Backend) {
    use whatsify::store::Resolved;
    let s = open(backend).await;
    let (canon, alias, other, stranger) = (key(51), key(52), key(53), key(54));
    let both = [canon.clone(), alias.clone()];
    assert_eq!(
        s.resolve_contacts(&both).await.expect("resolve"),
        [Resolved::default(), Resolved::default()]
    );
    s.append(vec![keyed(
        &Queue::Contact(canon.clone()),
        "m1",
        "k1",
        true,
    )])
    .await
    .expect("append");
    let known = Resolved {
        link: None,
        known: true,
    };
    assert_eq!(
        s.resolve_contacts(&both).await.expect("resolve"),
        [known.clone(), Resolved::default()]
    );
    let held = s
        .link_contacts(&[(alias.clone(), canon.clone())])
        .await
        .expect("link");
    assert_eq!(held, std::slice::from_ref(&canon));
    // Linked already: the first link stays.
    let held = s
        .link_contacts(&[(alias.clone(), other.clone())])
        .await
        .expect("link");
    assert_eq!(held, std::slice::from_ref(&canon));
    let linked = Resolved {
        link: Some(canon.clone()),
        known: false,
    };
    assert_eq!(
        s.resolve_contacts(&[canon.clone(), alias.clone(), stranger.clone()])
            .await
            .expect("resolve"),
        [known, linked.clone(), Resolved::default()]
    );
    assert_eq!(
        s.aliases(&canon).await.expect("aliases"),
        std::slice::from_ref(&alias)
    );
    assert!(s.aliases(&other).await.expect("aliases").is_empty());
    assert_eq!(
        store::links::canonical(s.as_ref(), alias.clone())
            .await
            .expect("canonical"),
        canon
    );
    assert_eq!(
        store::links::canonical(s.as_ref(), stranger.clone())
            .await
            .expect("canonical"),
        stranger
    );
    // Dropping another contact's links leaves this one's.
    s.unlink(&other).await.expect("unlink");
    assert_eq!(
        s.resolve_contacts(std::slice::from_ref(&alias))
            .await
            .expect("resolve"),
        [linked]
    );
    // An alias with data of its own (seen apart before it was linked).
    s.append(vec![keyed(
        &Queue::Contact(alias.clone()),
        "m2",
        "k2",
        true,
    )])
    .await
    .expect("append");
    let gone = s.erase_contact(&canon, 7).await.expect("erase");
    assert_eq!(gone, std::slice::from_ref(&alias));
    assert_eq!(
        s.resolve_contacts(&both).await.expect("resolve"),
        [Resolved::default(), Resolved::default()]
    );
    assert!(s.aliases(&canon).await.expect("aliases").is_empty());
    for k in &both {
        assert_eq!(s.suppressed(k).await.expect("suppressed"), Some(7));
        assert_eq!(s.data_key(k).await.expect("key"), None);
        assert!(
            s.read(&Queue::Contact(k.clone()), 10)
                .await
                .expect("read")
                .is_empty()
        );
    }
    assert!(s.erase_contact(&canon, 8).await.expect("again").is_empty());

    // A link recorded with the events that show it (the webhook's way).
    let r = s
        .append_linked(
            vec![keyed(&Queue::Contact(canon.clone()), "m3", "k3", true)],
            &[(alias.clone(), canon.clone())],
        )
        .await
        .expect("append");
    assert_eq!(r, [Appended::New]);
    assert_eq!(
        s.resolve_contacts(&both).await.expect("resolve"),
        [
            Resolved {
                link: None,
                known: true
            },
            Resolved {
                link: Some(canon.clone()),
                known: false
            }
        ]
    );
    assert_eq!(s.aliases(&canon).await.expect("aliases"), both[1..]);
}
both_backends!(contact_links, contact_links_resolve_and_go_with_the_contact);

/// The whole conformance suite on a real 3-master Redis Cluster (issue 7,
/// point 4): every script and transaction keeps to one slot, pipelines
/// that span slots are split by node, and the data-key walk visits every
/// node. Each case gets its own key prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_on_a_redis_cluster() {
    let cluster = crate::helpers::RedisCluster::start();
    crate::on_cluster!(
        cluster,
        appends_in_order_and_skips_seen_keys,
        queues_are_separate,
        contacts_with_events_are_ready_and_system_queues_are_not,
        concurrent_appends_of_one_key_store_one_entry,
        a_claim_is_exclusive_and_a_commit_is_all_or_nothing,
        an_expired_lease_cannot_commit,
        a_message_arriving_during_a_claim_keeps_the_contact_ready,
        the_outbox_lane_sends_in_order_and_empties,
        timers_fire_when_due_and_can_be_cancelled,
        delivery_records_only_move_forward,
        a_deferred_outbox_keeps_its_head_state_and_wakes_when_due,
        a_dead_letter_leaves_the_outbox_and_is_listed,
        a_job_is_finished_even_when_the_lease_was_lost,
        a_finish_can_remove_earlier_jobs_and_release_the_claim,
        rate_limits_and_breakers_are_shared,
        console_sessions_are_kept_until_they_expire_or_end,
        the_consent_ledger_keeps_every_change_in_order,
        a_consent_that_changes_nothing_is_not_recorded,
        only_the_holder_renews_a_lease,
        a_profile_outlives_the_session_and_expires_after_its_time,
        the_audit_log_appends_only_after_its_head,
        the_audit_log_pages_newest_first_and_indexes_open_requests,
        old_message_history_is_purged,
        recent_history_is_the_newest_entries_in_order,
        entries_are_stored_only_under_the_contact_s_data_key,
        nothing_is_written_under_an_erased_contact_s_key,
        a_claim_from_before_a_rewrap_still_writes,
        a_job_appended_to_an_outbox_is_ready_for_the_senders,
        a_campaign_queues_each_contact_once,
        campaigns_are_listed_oldest_first,
        skips_are_counted_by_reason,
        a_key_mismatch_keeps_the_audience,
        delivery_records_count_a_campaign_s_progress_once,
        a_campaign_job_that_ends_unsent_counts_why,
        an_opt_out_after_a_campaign_message_counts_once,
        erasing_a_contact_with_a_queued_campaign_job_counts_it_suppressed,
        a_campaign_status_is_compared_and_set,
        a_campaign_lease_is_exclusive,
        briefs_tell_the_dispatcher_about_each_contact,
        only_the_lease_holder_drops_audience_entries,
        contact_links_resolve_and_go_with_the_contact,
    );
    // The cases' keys are spread over the three masters.
    for url in cluster.urls() {
        let client = redis::Client::open(url.as_str()).expect("url");
        let mut c = client.get_connection().expect("connect");
        let keys: u64 = redis::cmd("DBSIZE").query(&mut c).expect("dbsize");
        assert!(keys > 0, "no key on {url}");
    }
}

/// A grant beyond `GRANTS_PER_DAY` in 24 hours is decided in the append:
/// the entry is stored as its refused reading, and nothing goes on the
/// ledger; withdrawals are recorded whenever they change the state.
async fn grants_beyond_the_days_bound_are_refused_in_the_append(backend: &Backend) {
    let s = open(backend).await;
    let k = key(140);
    let q = Queue::Contact(k.clone());
    let t = whatsify::clock::now_secs() - 100;
    let with = |dedup: &str, granted: bool, at: u64| InboxEntry {
        consent: Some(whatsify::domain::consent::ConsentChange {
            at,
            ..marketing(granted, "keyword")
        }),
        refused: granted.then(|| format!("refused-{dedup}").into_bytes()),
        ..entry(&q, dedup, dedup)
    };
    let mut got = Vec::new();
    for i in 0..5u64 {
        let stop = format!("s{i}");
        let start = format!("g{i}");
        got.extend(
            s.append(vec![with(&stop, false, t + 2 * i)])
                .await
                .expect("append"),
        );
        got.extend(
            s.append(vec![with(&start, true, t + 2 * i + 1)])
                .await
                .expect("append"),
        );
    }
    let n = GRANTS_PER_DAY;
    let mut want = Vec::new();
    for i in 0..5 {
        want.push(if i <= n {
            Appended::New
        } else {
            Appended::NewSameConsent
        });
        want.push(if i < n {
            Appended::New
        } else {
            Appended::NewGrantRefused
        });
    }
    assert_eq!(got, want);
    let ledger = s.consent(&k).await.expect("ledger");
    assert_eq!(ledger.len(), 2 * n + 1, "{ledger:?}");
    assert!(!whatsify::privacy::consent::granted(&ledger, "marketing"));
    let stored = bodies(&s.read(&q, 100).await.expect("read"));
    assert_eq!(stored.len(), 10);
    assert_eq!(stored[2 * n + 1], format!("refused-g{n}"), "{stored:?}");
    assert_eq!(stored[2 * n - 1], format!("g{}", n - 1), "{stored:?}");
    // A day after the first grant, one may be given again.
    let later = with(
        "later",
        true,
        t + 1 + whatsify::domain::consent::GRANT_WINDOW_SECS,
    );
    assert_eq!(
        s.append(vec![later]).await.expect("append"),
        [Appended::New]
    );
}
both_backends!(
    grants_bounded,
    grants_beyond_the_days_bound_are_refused_in_the_append
);

/// On Redis the append reads the ledger newest first and stops where no
/// entry can matter; the latest state and the day's grants stay right when
/// the ledger has entries written days ago (seeded here with their ids).
#[tokio::test]
async fn the_redis_grant_check_reads_back_as_far_as_it_must() {
    let b = crate::helpers::redis();
    let Backend::Redis { url, prefix } = &b.backend else {
        unreachable!("a Redis backend")
    };
    let s = open(&b.backend).await;
    let k = key(141);
    let ledger_key = format!("{prefix}{{s:0}}:c:{}:consent", k.as_str());
    let client = redis::Client::open(url.as_str()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let now = whatsify::clock::now_secs();
    let day = 86_400;
    // Written when they happened: a STOP 10 days ago, then three STARTs
    // and STOPs two days ago, the last a STOP.
    let mut seeded = vec![(now - 10 * day, false)];
    for i in 0..3 {
        seeded.push((now - 2 * day + 2 * i, true));
        seeded.push((now - 2 * day + 2 * i + 1, false));
    }
    for (at, granted) in &seeded {
        let c = whatsify::domain::consent::ConsentChange {
            at: *at,
            ..marketing(*granted, "keyword")
        };
        let _: String = redis::cmd("XADD")
            .arg(&ledger_key)
            .arg(format!("{}-0", at * 1000))
            .arg("c")
            .arg(serde_json::to_string(&c).expect("json"))
            .query_async(&mut conn)
            .await
            .expect("xadd");
    }
    let q = Queue::Contact(k.clone());
    let with = |dedup: &str, granted: bool, at: u64| InboxEntry {
        consent: Some(whatsify::domain::consent::ConsentChange {
            at,
            ..marketing(granted, "keyword")
        }),
        ..entry(&q, dedup, dedup)
    };
    // Withdrawn already (two days ago): a STOP changes nothing.
    let got = s.append(vec![with("a", false, now)]).await.expect("append");
    assert_eq!(got, [Appended::NewSameConsent]);
    // The grants of two days ago are outside the window: three START
    // (each after a STOP) are recorded, the fourth is not.
    let mut got = Vec::new();
    for i in 0..4 {
        let at = now + 2 * i;
        got.extend(
            s.append(vec![with(&format!("g{i}"), true, at)])
                .await
                .expect("append"),
        );
        got.extend(
            s.append(vec![with(&format!("s{i}"), false, at + 1)])
                .await
                .expect("append"),
        );
    }
    let n = whatsify::domain::consent::GRANTS_PER_DAY;
    let mut want = Vec::new();
    for i in 0..4 {
        want.push(if i < n {
            Appended::New
        } else {
            Appended::NewGrantRefused
        });
        want.push(if i < n {
            Appended::New
        } else {
            Appended::NewSameConsent
        });
    }
    assert_eq!(got, want);
    // Only a STOP of a month ago on record: a STOP now changes nothing.
    let lone = key(142);
    let lone_key = format!("{prefix}{{s:0}}:c:{}:consent", lone.as_str());
    let old = whatsify::domain::consent::ConsentChange {
        at: now - 30 * day,
        ..marketing(false, "keyword")
    };
    let _: String = redis::cmd("XADD")
        .arg(&lone_key)
        .arg(format!("{}-0", (now - 30 * day) * 1000))
        .arg("c")
        .arg(serde_json::to_string(&old).expect("json"))
        .query_async(&mut conn)
        .await
        .expect("xadd");
    let lq = Queue::Contact(lone.clone());
    let stop = InboxEntry {
        consent: Some(marketing(false, "keyword")),
        ..entry(&lq, "lone-stop", "STOP")
    };
    assert_eq!(
        s.append(vec![stop]).await.expect("append"),
        [Appended::NewSameConsent]
    );
}

/// The delivery-status merge and the campaign tally are written twice: in
/// Rust (`Delivery::merge`, `campaign_tally`, which the embedded store runs)
/// and in Lua (`merge.lua`, which the Redis store runs in its scripts). The
/// same generated status sequences go through both, and the record kept
/// and the campaign's counters must come out the same.
#[test]
fn the_lua_merge_and_tally_agree_with_the_rust_rules() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use whatsify::store::campaign_tally;

    let b = crate::helpers::redis();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let s = rt.block_on(open(&b.backend));
    let states = prop::sample::select(DeliveryState::ALL.to_vec());
    let case = std::sync::atomic::AtomicU32::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 32,
        ..Config::default()
    });
    let strategy = prop::collection::vec((states, any::<bool>()), 1..8);
    runner
        .run(&strategy, |steps| {
            let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let k = ContactKey::parse(&format!("{:032x}", 0xabc_0000 + n)).expect("key");
            let campaign = format!("prop{n}");
            let job = format!("cmp.{campaign}.1");
            // The Rust rules.
            let mut kept: Option<Delivery> = None;
            let mut counted = std::collections::BTreeMap::<String, i64>::new();
            let updates: Vec<Delivery> = steps
                .iter()
                .enumerate()
                .map(|(i, (state, with_code))| Delivery {
                    code: with_code.then_some(131_000 + i as i64),
                    reason: (*state == DeliveryState::NoConsent && *with_code)
                        .then(|| "opted_out".to_owned()),
                    ..record(&job, *state, 100 + i as u64)
                })
                .collect();
            for u in &updates {
                let before = kept.clone();
                let changed = match kept.as_mut() {
                    None => {
                        kept = Some(u.clone());
                        true
                    }
                    Some(d) => d.merge(u),
                };
                if changed {
                    for (name, delta) in campaign_tally(before.as_ref(), u) {
                        *counted.entry(name).or_default() += delta;
                    }
                }
            }
            // The Lua rules, through the Redis store.
            let (records, counts) = rt.block_on(async {
                for u in &updates {
                    status(&s, &k, u.clone()).await;
                }
                (
                    s.deliveries(&k).await.expect("records"),
                    s.campaign_counts(&campaign).await.expect("counts"),
                )
            });
            prop_assert_eq!(records, kept.into_iter().collect::<Vec<_>>());
            counted.retain(|_, v| *v != 0);
            let counts: std::collections::BTreeMap<String, i64> =
                counts.into_iter().filter(|(_, v)| *v != 0).collect();
            prop_assert_eq!(counts, counted);
            Ok(())
        })
        .expect("the Lua and the Rust rules agree");
}
