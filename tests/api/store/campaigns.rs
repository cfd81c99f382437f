//! Store conformance, campaigns: records, audiences, dispatch and counters (each case on both backends
//! unless it names one).

use super::*;
use whatsify::domain::campaign::Skip;

/// A campaign is stored scheduled with its audience in order; each
/// contact is queued once (a second dispatch finds its mark), in one job
/// in its outbox, counted `queued`; the audience shrinks from the front.
pub(super) async fn a_campaign_queues_each_contact_once(backend: &Backend) {
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
pub(super) async fn campaigns_are_listed_oldest_first(backend: &Backend) {
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
pub(super) async fn skips_are_counted_by_reason(backend: &Backend) {
    let s = open(backend).await;
    new_campaign(&s, "cs", 4).await;
    let (a, b, c) = (key(101), key(102), key(103));
    let (done, left) = s
        .campaign_dispatch(
            "cs",
            "d",
            vec![
                campaign_skip(&a, Skip::NoConsent),
                campaign_skip(&b, Skip::OptedOut),
                campaign_skip(&c, Skip::NoConsent),
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
                campaign_skip(&a, Skip::NoConsent),
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
pub(super) async fn a_key_mismatch_keeps_the_audience(backend: &Backend) {
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
                campaign_skip(&b, Skip::Unknown),
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
                campaign_skip(&b, Skip::Unknown),
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
    s.erase(&a, &whatsify::domain::BusinessId::default_business(), 1)
        .await
        .expect("erase");
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
pub(super) async fn delivery_records_count_a_campaign_s_progress_once(backend: &Backend) {
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
pub(super) async fn a_campaign_job_that_ends_unsent_counts_why(backend: &Backend) {
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
pub(super) async fn an_opt_out_after_a_campaign_message_counts_once(backend: &Backend) {
    let s = open(backend).await;
    new_campaign(&s, "co", 3).await;
    let (a, b, c) = (key(114), key(115), key(116));
    let sends = vec![
        campaign_job(&a, "ja", "ka", true),
        campaign_job(&b, "jb", "kb", true),
        campaign_skip(&c, Skip::NoConsent),
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
    commit_consent(
        &s,
        &b,
        vec![marketing(false, "button"), marketing(false, "flow")],
    )
    .await;
    assert_eq!(counter(&s, "co", "opt_outs").await, 2);
    commit_consent(&s, &b, vec![marketing(false, "button")]).await;
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
pub(super) async fn erasing_a_contact_with_a_queued_campaign_job_counts_it_suppressed(
    backend: &Backend,
) {
    let s = open(backend).await;
    new_campaign(&s, "ce", 3).await;
    let (a, b, c) = (key(117), key(118), key(119));
    let sends = vec![
        campaign_job(&a, "ja", "ka", true),
        campaign_job(&b, "jb", "kb", true),
        campaign_skip(&c, Skip::NoConsent),
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
        s.erase(k, &whatsify::domain::BusinessId::default_business(), 5)
            .await
            .expect("erase");
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
    s.erase(&a, &whatsify::domain::BusinessId::default_business(), 6)
        .await
        .expect("erase");
    assert_eq!(counter(&s, "ce", "skipped:suppressed").await, 1);
    // The marks went with the contact (the dispatcher skips a suppressed
    // contact itself).
    let (done, _) = s
        .campaign_dispatch(
            "ce",
            "d",
            vec![campaign_skip(&a, Skip::Suppressed)],
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
pub(super) async fn a_campaign_status_is_compared_and_set(backend: &Backend) {
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
pub(super) async fn a_campaign_lease_is_exclusive(backend: &Backend) {
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
pub(super) async fn briefs_tell_the_dispatcher_about_each_contact(backend: &Backend) {
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
    s.erase(
        &erased,
        &whatsify::domain::BusinessId::default_business(),
        77,
    )
    .await
    .expect("erase");

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
        ..campaign_skip(&skipped, Skip::NoConsent)
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
pub(super) async fn only_the_lease_holder_drops_audience_entries(backend: &Backend) {
    let s = open(backend).await;
    new_campaign(&s, "cf2", 3).await;
    let a = key(131);
    let (done, left) = s
        .campaign_dispatch(
            "cf2",
            "stalled",
            vec![campaign_skip(&a, Skip::NoConsent)],
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
            vec![campaign_skip(&a, Skip::NoConsent)],
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
pub(super) async fn contact_links_resolve_and_go_with_the_contact(backend: &Backend) {
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
    let gone = s
        .erase_contact(&canon, &whatsify::domain::BusinessId::default_business(), 7)
        .await
        .expect("erase");
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
    assert!(
        s.erase_contact(&canon, &whatsify::domain::BusinessId::default_business(), 8)
            .await
            .expect("again")
            .is_empty()
    );

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
