//! Store conformance, data keys: entries under their key, erasure, rewraps (each case on both backends
//! unless it names one).

use super::*;

/// A job appended straight to an outbox (an integration event) is stored
/// once under the outbox's data key, found ready by a sweep, and claimed
/// in order like any outbox job.
pub(super) async fn a_job_appended_to_an_outbox_is_ready_for_the_senders(backend: &Backend) {
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
pub(super) async fn a_claim_from_before_a_rewrap_still_writes(backend: &Backend) {
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
    s.erase(&c, &whatsify::domain::BusinessId::default_business(), 1)
        .await
        .expect("erase");
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
