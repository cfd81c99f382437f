//! The privacy notice on first contact (issue 20, point 4): a business's
//! first reply to a new contact comes just after its privacy notice, once,
//! recorded in the contact's ledger with the policy version; each business
//! speaks for itself, and a policy change is noticed per business.

use serde_json::Value;
use whatsify::domain::profile::Profile;

use crate::both_backends;
use crate::businesses::{CAFE, CAFE_FLOW, SHOP, WA, key, said_from, say, text};
use crate::graph::{FakeGraph, NOTICE, describe};
use crate::helpers::{Backend, TestApp, spawn_app_on_store_with_file};
use crate::outbox::{app_with, contact_key, sent_to, until};

/// The shop's policy link and its notice of a policy change; the café's
/// own first-contact wording.
const SHOP_NOTICE: &str = "text: This is Acme Shoes on WhatsApp. We keep your number and our \
     messages to answer you. Reply PRIVACY to see, correct or delete your data, or STOP to end \
     promotions. Our privacy policy: https://acme.example/privacy";
const SHOP_CHANGE: &str = "Acme Shoes has a new privacy policy: https://acme.example/privacy";
const CAFE_NOTICE: &str = "Corner Café keeps your messages to serve your order. Details: \
     https://cafe.example/privacy";

/// Two businesses: the shop on the shipped flows with a policy link (and
/// the built-in wording), the café on its own flows and wording.
fn settings(cafe_flows: &std::path::Path, shop_version: &str) -> String {
    std::fs::write(cafe_flows.join("cafe.yaml"), CAFE_FLOW).expect("write");
    let cafe_dir = cafe_flows.display();
    format!(
        r#"
[[businesses]]
id = "shop"
name = "Acme Shoes"
phone_number_ids = ["{SHOP}"]
access_token = "shop-token-0123456789abcdef"
flows_dir = "flows"
policy_version = "{shop_version}"
policy_url = "https://acme.example/privacy"
policy_notice = "{SHOP_CHANGE}"

[[businesses]]
id = "cafe"
name = "Corner Café"
phone_number_ids = ["{CAFE}"]
access_token = "cafe-token-0123456789abcdef"
flows_dir = "{cafe_dir}"
policy_version = "cafe-7"
privacy_notice = "{CAFE_NOTICE}"
"#
    )
}

async fn two_businesses(
    backend: &Backend,
    graph: &FakeGraph,
    shop_version: &str,
) -> (TestApp, tempfile::TempDir) {
    graph.expect_token(SHOP, "shop-token-0123456789abcdef");
    graph.expect_token(CAFE, "cafe-token-0123456789abcdef");
    let cafe_flows = tempfile::tempdir().expect("temp dir");
    let toml = settings(cafe_flows.path(), shop_version);
    let app = crate::integrations::app_with_receivers(backend, graph, &toml).await;
    (app, cafe_flows)
}

/// The `policy_notice` entries of a contact's ledger as the admin API
/// shows them: (source, policy version).
async fn notices_shown(app: &TestApp, business: &str) -> Vec<(String, String)> {
    let (status, shown) = app
        .admin_get(&format!("/admin/businesses/{business}/contacts/{WA}"))
        .await;
    assert_eq!(status, 200, "{shown}");
    notices_in(&shown["ledger"])
}

fn notices_in(ledger: &Value) -> Vec<(String, String)> {
    ledger
        .as_array()
        .expect("a ledger")
        .iter()
        .filter(|c| c["purpose"] == "policy_notice")
        .map(|c| {
            (
                c["source"].as_str().unwrap_or_default().to_owned(),
                c["policy_version"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The same person writes to two businesses: each greets them with its
/// own notice (the shop's built-in wording with its name and link, the
/// café's own), just before its first reply, and only once; each notice is
/// in that business's ledger under its policy version, in the MY DATA copy
/// and in the audit log.
async fn each_business_sends_its_own_notice_once(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let (app, _cafe_flows) = two_businesses(backend, &graph, "2026-01").await;
    say(&app, SHOP, "wamid.N1", text("hi")).await;
    say(&app, CAFE, "wamid.N2", text("hi")).await;
    until("both answers", 30, async || {
        said_from(&graph, SHOP).len() >= 3 && said_from(&graph, CAFE).len() >= 2
    })
    .await;
    assert_eq!(
        said_from(&graph, SHOP),
        [
            SHOP_NOTICE,
            "text: Hi Ana 👋",
            "buttons: What can we do for you today? [See offers | Get help | My privacy]"
        ]
    );
    assert_eq!(
        said_from(&graph, CAFE),
        [
            format!("text: {CAFE_NOTICE}"),
            "text: Welcome to the Corner Café ☕".to_owned()
        ]
    );
    // Known now: the next answers come without a notice.
    say(&app, SHOP, "wamid.N3", text("hi")).await;
    say(&app, CAFE, "wamid.N4", text("hi")).await;
    until("the next answers", 30, async || {
        said_from(&graph, SHOP).len() >= 5 && said_from(&graph, CAFE).len() >= 3
    })
    .await;
    let shop = said_from(&graph, SHOP);
    assert_eq!(&shop[3..], ["text: Hi Ana 👋", shop[2].as_str()]);
    assert_eq!(
        said_from(&graph, CAFE)[2],
        "text: Welcome to the Corner Café ☕"
    );
    // On record, each under its own business and policy version.
    for (business, version) in [("shop", "2026-01"), ("cafe", "cafe-7")] {
        assert_eq!(
            notices_shown(&app, business).await,
            [("first_contact".to_owned(), version.to_owned())],
            "{business}"
        );
        let (_, shown) = app
            .admin_get(&format!("/admin/businesses/{business}/contacts/{WA}"))
            .await;
        assert_eq!(shown["profile"]["policy_version_shown"], version);
        // The evidence is the message the notice came before, hashed.
        let entry = shown["ledger"]
            .as_array()
            .and_then(|l| l.iter().find(|c| c["purpose"] == "policy_notice"))
            .expect("the entry")
            .clone();
        assert!(
            entry["evidence"]
                .as_str()
                .is_some_and(|e| !e.is_empty() && !e.contains("wamid")),
            "{entry}"
        );
        let (status, copy) = app
            .admin_get(&format!(
                "/admin/businesses/{business}/contacts/{WA}/export"
            ))
            .await;
        assert_eq!(status, 200, "{copy}");
        assert_eq!(
            notices_in(&copy["consent"]["history"]),
            [("first_contact".to_owned(), version.to_owned())],
            "{business}: {copy}"
        );
        let contact = key(&app, business);
        let (_, log) = app
            .admin_get(&format!(
                "/admin/businesses/{business}/audit?contact={}&kind=policy_notice",
                contact.as_str()
            ))
            .await;
        let entries = log["entries"].as_array().expect("entries");
        assert_eq!(entries.len(), 1, "{business}: {log}");
        assert_eq!(entries[0]["actor"], "system");
    }
    app.stop().await;
}
both_backends!(
    two_businesses_notices,
    each_business_sends_its_own_notice_once
);

/// The shop's policy version changes (the next instance runs the new
/// one): its contact gets the shop's notice of the change before the next
/// answer, once; the café's contact, under an unchanged version, gets
/// none.
async fn a_policy_change_is_noticed_by_its_own_business_only(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let (app, cafe_flows) = two_businesses(backend, &graph, "2026-01").await;
    say(&app, SHOP, "wamid.V1", text("hi")).await;
    say(&app, CAFE, "wamid.V2", text("hi")).await;
    until("both answers", 30, async || {
        said_from(&graph, SHOP).len() >= 3 && said_from(&graph, CAFE).len() >= 2
    })
    .await;
    app.state.shutdown.trigger();
    let env = [
        ("WHATSIFY__META__GRAPH_API_BASE", graph.base.clone()),
        ("WHATSIFY__OUTBOX__MARK_READ", "false".to_owned()),
    ];
    let toml = settings(cafe_flows.path(), "2026-06");
    let next = spawn_app_on_store_with_file(backend, &env, &toml, app.store(), 2).await;
    say(&next, SHOP, "wamid.V3", text("hi")).await;
    say(&next, CAFE, "wamid.V4", text("hi")).await;
    until("the next answers", 30, async || {
        said_from(&graph, SHOP).len() >= 6 && said_from(&graph, CAFE).len() >= 3
    })
    .await;
    let shop = said_from(&graph, SHOP);
    assert_eq!(shop[3], format!("text: {SHOP_CHANGE}"), "{shop:#?}");
    assert_eq!(shop[4], "text: Hi Ana 👋");
    assert_eq!(
        said_from(&graph, CAFE)[2],
        "text: Welcome to the Corner Café ☕",
        "the café's contact is told nothing"
    );
    assert_eq!(
        notices_shown(&next, "shop").await,
        [
            ("first_contact".to_owned(), "2026-01".to_owned()),
            ("notice".to_owned(), "2026-06".to_owned())
        ]
    );
    assert_eq!(
        notices_shown(&next, "cafe").await,
        [("first_contact".to_owned(), "cafe-7".to_owned())]
    );
    // Once: the answer after that comes alone.
    say(&next, SHOP, "wamid.V5", text("hi")).await;
    until("the answer after", 30, async || {
        said_from(&graph, SHOP).len() >= 8
    })
    .await;
    assert_eq!(said_from(&graph, SHOP)[6], "text: Hi Ana 👋");
    next.stop().await;
    app.stop().await;
}
both_backends!(
    policy_change,
    a_policy_change_is_noticed_by_its_own_business_only
);

/// What a customer of the one (default) business was sent, as `describe`
/// shows it.
fn said_to(graph: &FakeGraph, wa: &str) -> Vec<String> {
    sent_to(graph, wa).iter().map(describe).collect()
}

/// A new contact whose first message is STOP gets STOP's answer alone, at
/// once; the notice comes with the flows' first reply.
async fn a_first_stop_is_answered_alone(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let wa = "16505558801";
    let post = async |wamid: &str, body: &str| {
        let at = crate::outbox::now();
        let resp = app
            .post_signed(&crate::outbox::text_from(wa, wamid, body, at))
            .await;
        assert_eq!(resp.status(), 200);
    };
    post("wamid.F1", "STOP").await;
    until("STOP's answer", 30, async || {
        !said_to(&graph, wa).is_empty()
    })
    .await;
    let ledger = app
        .store()
        .consent(&contact_key(&app, wa))
        .await
        .expect("ledger");
    assert!(
        ledger.iter().all(|c| c.purpose != "policy_notice"),
        "{ledger:?}"
    );
    post("wamid.F2", "hi").await;
    until("the flows' answer", 30, async || {
        said_to(&graph, wa).len() >= 4
    })
    .await;
    let said = said_to(&graph, wa);
    assert!(said[0].contains("you won't get promotions"), "{said:#?}");
    assert_eq!(&said[1..], [NOTICE, "text: Hi Ana 👋", said[3].as_str()]);
    assert!(said[3].starts_with("buttons: What can we do"));
    let ledger = app
        .store()
        .consent(&contact_key(&app, wa))
        .await
        .expect("ledger");
    let kinds: Vec<(&str, &str)> = ledger
        .iter()
        .map(|c| (c.purpose.as_str(), c.source.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [("marketing", "keyword"), ("policy_notice", "first_contact")]
    );
    app.stop().await;
}
both_backends!(first_stop, a_first_stop_is_answered_alone);

/// A contact who wrote before this release (their profile holds the
/// policy version they started under) gets no first-contact notice.
async fn a_contact_from_before_gets_no_first_contact_notice(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let wa = "16505558802";
    let earlier = Profile {
        policy_version: Some("1".to_owned()),
        first_seen: Some(crate::outbox::now() - 86_400),
        last_seen: Some(crate::outbox::now() - 86_400),
        ..Profile::default()
    };
    seed_profile(&app, wa, &earlier).await;
    crate::outbox::say_hi(&app, wa, "wamid.P1").await;
    until("the answer", 30, async || said_to(&graph, wa).len() >= 2).await;
    let said = said_to(&graph, wa);
    assert_eq!(said[0], "text: Hi Ana 👋", "{said:#?}");
    assert!(said[1].starts_with("buttons: What can we do"));
    let ledger = app
        .store()
        .consent(&contact_key(&app, wa))
        .await
        .expect("ledger");
    assert!(ledger.is_empty(), "{ledger:?}");
    let (_, shown) = app.admin_get(&format!("/admin/contacts/{wa}")).await;
    assert_eq!(shown["profile"]["policy_version_shown"], "1");
    app.stop().await;
}
both_backends!(
    from_before,
    a_contact_from_before_gets_no_first_contact_notice
);

/// Writes `profile` for the contact `wa` as the worker of an earlier
/// release did: sealed under the contact's data key, in one commit.
async fn seed_profile(app: &TestApp, wa: &str, profile: &Profile) {
    use std::time::Duration;
    use whatsify::store::{Commit, InboxEntry, Lane, Queue};
    let store = app.store();
    let contact = contact_key(app, wa);
    store
        .append(vec![InboxEntry {
            queue: Queue::Contact(contact.clone()),
            dedup: uuid::Uuid::new_v4().to_string(),
            sealed: b"x".to_vec(),
            consent: None,
            refused: None,
            key: None,
        }])
        .await
        .expect("append");
    // The app's workers may hold the contact for a moment (they take the
    // entry and skip it): wait for it.
    let mut claim = None;
    until("the contact", 10, async || {
        claim = store
            .claim(Lane::Inbox, &contact, "test", Duration::from_secs(30), 10)
            .await
            .expect("claim");
        claim.is_some()
    })
    .await;
    let claim = claim.expect("claimed");
    let keyring = &app.state.keyring;
    let (_, fresh) = keyring.new_data_key(&contact).expect("new key");
    let wrapped = store
        .create_data_key(&contact, fresh, Duration::from_secs(86_400))
        .await
        .expect("data key");
    let sealer = keyring.unwrap(&contact, &wrapped).expect("unwraps");
    let plain = serde_json::to_vec(profile).expect("json");
    let context = whatsify::domain::profile::profile_context(&contact);
    let sealed = sealer.seal(&plain, &context).expect("seal");
    let commit = Commit {
        acked: claim.entries.iter().map(|e| e.id.clone()).collect(),
        session: None,
        session_ttl: Duration::from_secs(60),
        outbox: Vec::new(),
        wake_at: None,
        window: None,
        deliveries: Vec::new(),
        consent: Vec::new(),
        profile: Some(sealed),
        history: Vec::new(),
        profile_ttl: Duration::from_secs(86_400),
        stats: Vec::new(),
    };
    store.commit(&claim, commit).await.expect("commit");
    assert!(store.profile(&contact).await.expect("read").is_some());
}

/// The two-business notices on a real 3-master Redis Cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_on_a_redis_cluster() {
    let cluster = crate::helpers::RedisCluster::start();
    crate::on_cluster!(
        cluster,
        each_business_sends_its_own_notice_once,
        a_policy_change_is_noticed_by_its_own_business_only,
    );
}
