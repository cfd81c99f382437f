//! Store conformance, the inbox: appends in order, de-duplication, separate queues, readiness (each case on both backends
//! unless it names one).

use super::*;

pub(super) async fn appends_in_order_and_skips_seen_keys(backend: &Backend) {
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

pub(super) async fn queues_are_separate(backend: &Backend) {
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

pub(super) async fn contacts_with_events_are_ready_and_system_queues_are_not(backend: &Backend) {
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

pub(super) async fn concurrent_appends_of_one_key_store_one_entry(backend: &Backend) {
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
