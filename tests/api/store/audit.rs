//! Store conformance, the audit log and its request index (each case on both backends
//! unless it names one).

use super::*;

pub(super) async fn the_audit_log_appends_only_after_its_head(backend: &Backend) {
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

/// The log reads newest first below a sequence number; a run appends in
/// one go only after the head; the request index holds every open
/// request with its confirmation, closes a group on its completion, moves
/// a lapsed unconfirmed one out, and keeps the newest closed entries.
pub(super) async fn the_audit_log_pages_newest_first_and_indexes_open_requests(backend: &Backend) {
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

/// A log written before the request index was kept (its requests nowhere
/// in the index) gets the index rebuilt from the log on first use, with
/// requests closed after the upgrade closed.
pub(super) async fn a_log_from_before_the_request_index_has_it_rebuilt(backend: &Backend) {
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
