//! Store conformance, the lanes: claims, leases, timers and the outbox lane (each case on both backends
//! unless it names one).

use super::*;

pub(super) async fn a_claim_is_exclusive_and_a_commit_is_all_or_nothing(backend: &Backend) {
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
                ..ack_all(&claim)
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
                session_ttl: Duration::from_secs(3600),
                outbox: vec![b"job-3".to_vec()],
                ..ack_all(&claim)
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

pub(super) async fn an_expired_lease_cannot_commit(backend: &Backend) {
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
                outbox: vec![b"stale job".to_vec()],
                ..ack_all(&slow)
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
pub(super) async fn only_the_holder_renews_a_lease(backend: &Backend) {
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

pub(super) async fn a_message_arriving_during_a_claim_keeps_the_contact_ready(backend: &Backend) {
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
                ..ack_all(&claim)
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

pub(super) async fn the_outbox_lane_sends_in_order_and_empties(backend: &Backend) {
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

pub(super) async fn timers_fire_when_due_and_can_be_cancelled(backend: &Backend) {
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
