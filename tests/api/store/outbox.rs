//! Store conformance, the outbox: delivery records, deferrals, dead letters, finished jobs (each case on both backends
//! unless it names one).

use super::*;

pub(super) async fn delivery_records_only_move_forward(backend: &Backend) {
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

pub(super) async fn a_deferred_outbox_keeps_its_head_state_and_wakes_when_due(backend: &Backend) {
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

pub(super) async fn a_dead_letter_leaves_the_outbox_and_is_listed(backend: &Backend) {
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

pub(super) async fn a_job_is_finished_even_when_the_lease_was_lost(backend: &Backend) {
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

pub(super) async fn a_finish_can_remove_earlier_jobs_and_release_the_claim(backend: &Backend) {
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
