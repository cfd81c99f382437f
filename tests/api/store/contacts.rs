//! Store conformance, contacts: consent, profile, history, contact links (each case on both backends
//! unless it names one).

use super::*;

pub(super) async fn the_consent_ledger_keeps_every_change_in_order(backend: &Backend) {
    let s = open(backend).await;
    let k = key(31);
    let change = |granted: bool, at: u64, source: &str| whatsify::domain::consent::ConsentChange {
        purpose: "marketing".into(),
        granted,
        at,
        source: source.into(),
        policy_version: "1".into(),
        evidence: Some(format!("e{at}")),
        business: None,
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

pub(super) async fn a_profile_outlives_the_session_and_expires_after_its_time(backend: &Backend) {
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

pub(super) async fn old_message_history_is_purged(backend: &Backend) {
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
pub(super) async fn recent_history_is_the_newest_entries_in_order(backend: &Backend) {
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

/// An entry is stored only under the contact's data key: a fresh key when
/// it has none, else the stored one; anything else is refused untouched.
/// Keys are made once, rewrapped only from the value read, listed page by
/// page, and destroyed with the contact.
pub(super) async fn entries_are_stored_only_under_the_contact_s_data_key(backend: &Backend) {
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

    s.erase(&c, &whatsify::domain::BusinessId::default_business(), 1)
        .await
        .expect("erase");
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

/// A worker or sender that claimed a contact before it was erased writes
/// nothing afterwards: its data key is gone, so its commit or finish would
/// bring back data sealed under a destroyed key.
pub(super) async fn nothing_is_written_under_an_erased_contact_s_key(backend: &Backend) {
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
    s.erase(&c, &whatsify::domain::BusinessId::default_business(), 1)
        .await
        .expect("erase");
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
    s.erase(&k, &whatsify::domain::BusinessId::default_business(), 1)
        .await
        .expect("erase");
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

/// A grant beyond `GRANTS_PER_DAY` in 24 hours is decided in the append:
/// the entry is stored as its refused reading, and nothing goes on the
/// ledger; withdrawals are recorded whenever they change the state.
pub(super) async fn grants_beyond_the_days_bound_are_refused_in_the_append(backend: &Backend) {
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
