//! Store conformance, operations: rate limits, breakers, console sessions, scripts, retention (each case on both backends
//! unless it names one).

use super::*;

pub(super) async fn rate_limits_and_breakers_are_shared(backend: &Backend) {
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

pub(super) async fn console_sessions_are_kept_until_they_expire_or_end(backend: &Backend) {
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
pub(super) async fn a_consent_that_changes_nothing_is_not_recorded(backend: &Backend) {
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
