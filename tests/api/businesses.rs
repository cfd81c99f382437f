//! Several client businesses on one server: each change goes to the
//! business that owns its phone number id, and one person writing to two
//! businesses is two contacts that share nothing (consent, MY DATA,
//! DELETE MY DATA, campaigns, the admin API).

use serde_json::{Value, json};
use whatsify::domain::consent::MARKETING;
use whatsify::domain::{BusinessId, ContactId, ContactKey};

use crate::both_backends;
use crate::campaigns::{body_for, campaign_sends, drained_at};
use crate::graph::FakeGraph;
use crate::helpers::{Backend, TestApp};
use crate::outbox::{now, until};

/// The shoe shop's and the café's numbers.
pub(crate) const SHOP: &str = "1001001001";
pub(crate) const CAFE: &str = "2002002002";
/// The café is also on its own Meta app, whose webhook is `/webhook/cafe`.
const CAFE_APP_SECRET: &str = "cafe-own-app-secret-0123456789";
/// One customer, writing to both.
pub(crate) const WA: &str = "16505553434";

/// The café's own flows: one flow that greets everyone.
pub(crate) const CAFE_FLOW: &str = "id: cafe\ntriggers:\n  - default: true\nsteps:\n  - id: hello\n    say: \"Welcome to the Corner Café ☕\"\n";

/// The settings: the shop on the shipped flows, the café on its own
/// (written to `cafe_flows`).
pub(crate) fn two_businesses(cafe_flows: &std::path::Path) -> String {
    std::fs::write(cafe_flows.join("cafe.yaml"), CAFE_FLOW).expect("write");
    let cafe_dir = cafe_flows.display();
    format!(
        r#"
[[businesses]]
id = "shop"
name = "Shoe shop"
phone_number_ids = ["{SHOP}"]
access_token = "shop-token-0123456789abcdef"
flows_dir = "flows"

[[businesses]]
id = "cafe"
name = "Corner Café"
policy_version = "cafe-7"
contact = "ask for Sam at the counter"
phone_number_ids = ["{CAFE}"]
access_token = "cafe-token-0123456789abcdef"
app_secret = "{CAFE_APP_SECRET}"
flows_dir = "{cafe_dir}"
"#
    )
}

/// A message of the customer `wa` to the business number `number`.
pub(crate) fn to(number: &str, wa: &str, wamid: &str, message: Value) -> Vec<u8> {
    let mut m = json!({ "from": wa, "id": wamid, "timestamp": now().to_string() });
    for (k, v) in message.as_object().expect("message") {
        m[k] = v.clone();
    }
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "240017555501234", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550001111", "phone_number_id": number },
            "contacts": [{ "profile": { "name": "Ana" }, "wa_id": wa }],
            "messages": [m]
        }}]}]
    }))
    .expect("json")
}

pub(crate) fn text(body: &str) -> Value {
    json!({ "type": "text", "text": { "body": body } })
}

pub(crate) async fn say(app: &TestApp, number: &str, wamid: &str, message: Value) {
    let r = app.post_signed(&to(number, WA, wamid, message)).await;
    assert_eq!(r.status(), 200);
}

/// The texts (and interactive bodies) sent to the customer from `number`.
pub(crate) fn said_from(graph: &FakeGraph, number: &str) -> Vec<String> {
    graph
        .sent()
        .iter()
        .filter(|s| s.phone_number_id == number && s.body["to"] == format!("+{WA}"))
        .map(|s| crate::graph::describe(&s.body))
        .collect()
}

pub(crate) fn key(app: &TestApp, business: &str) -> ContactKey {
    let b = BusinessId::parse(business).expect("business");
    let id = ContactId::from_parts(Some(WA), None).expect("wa_id");
    app.state.pseudonymizer.contact_key_in(&b, &id)
}

pub(crate) async fn marketing(app: &TestApp, business: &str) -> Option<bool> {
    let ledger = app
        .store()
        .consent(&key(app, business))
        .await
        .expect("ledger");
    whatsify::domain::consent::state(&ledger, MARKETING).map(|c| c.granted)
}

/// The server with the two businesses; the fake Graph API takes each
/// number's requests only with its business's token.
pub(crate) async fn app(backend: &Backend, graph: &FakeGraph) -> (TestApp, tempfile::TempDir) {
    graph.expect_token(SHOP, "shop-token-0123456789abcdef");
    graph.expect_token(CAFE, "cafe-token-0123456789abcdef");
    let cafe_flows = tempfile::tempdir().expect("temp dir");
    let settings = two_businesses(cafe_flows.path());
    let app = crate::integrations::app_with_receivers(backend, graph, &settings).await;
    (app, cafe_flows)
}

/// The same person at two businesses: each business answers from its own
/// number, with its own token and its own flows; a STOP at the shop leaves the café's promotions reaching them;
/// MY DATA at the shop holds nothing said to the café; DELETE MY DATA at
/// the shop leaves the café's conversation; the admin API finds each
/// contact only under its own business.
async fn one_person_two_businesses(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let (app, _cafe_flows) = app(backend, &graph).await;
    assert_ne!(key(&app, "shop"), key(&app, "cafe"));
    say(&app, SHOP, "wamid.S1", text("START")).await;
    say(&app, CAFE, "wamid.C1", text("START")).await;
    until("both opted in", 30, async || {
        marketing(&app, "shop").await == Some(true) && marketing(&app, "cafe").await == Some(true)
    })
    .await;
    say(&app, SHOP, "wamid.S2", text("shoes in size 38 please")).await;
    say(&app, CAFE, "wamid.C2", text("a flat white please")).await;
    // Each business's own flows answer.
    until("both answers", 30, async || {
        said_from(&graph, CAFE)
            .iter()
            .any(|t| t.contains("Welcome to the Corner Café"))
            && said_from(&graph, SHOP)
                .iter()
                .any(|t| t.contains("What can we do for you"))
    })
    .await;
    assert!(
        !said_from(&graph, CAFE)
            .iter()
            .any(|t| t.contains("What can we do for you")),
        "the shop's flows answered at the café"
    );
    assert!(
        !said_from(&graph, SHOP)
            .iter()
            .any(|t| t.contains("Welcome to the Corner Café"))
    );
    say(&app, SHOP, "wamid.S3", text("STOP")).await;
    until("the shop's opt-out", 30, async || {
        marketing(&app, "shop").await == Some(false)
    })
    .await;
    assert_eq!(
        marketing(&app, "cafe").await,
        Some(true),
        "the café keeps it"
    );
    // Each consent is recorded under its business's policy version.
    for (business, version) in [("shop", "1"), ("cafe", "cafe-7")] {
        let ledger = app
            .store()
            .consent(&key(&app, business))
            .await
            .expect("ledger");
        assert!(
            !ledger.is_empty() && ledger.iter().all(|c| c.policy_version == version),
            "{business}: {:?}",
            ledger.iter().map(|c| &c.policy_version).collect::<Vec<_>>()
        );
    }
    // HELP names the business the customer wrote to.
    say(&app, SHOP, "wamid.S2h", text("HELP")).await;
    say(&app, CAFE, "wamid.C2h", text("HELP")).await;
    until("both helps", 30, async || {
        said_from(&graph, CAFE)
            .iter()
            .any(|t| t.contains("ask for Sam at the counter"))
            && said_from(&graph, SHOP)
                .iter()
                .any(|t| t.contains("This is Shoe shop on WhatsApp. To talk to a person"))
    })
    .await;
    assert!(!said_from(&graph, SHOP).iter().any(|t| t.contains("Sam")));

    // A campaign of each: the café's reaches them, the shop's does not.
    for (business, number, reached) in [("cafe", CAFE, 1), ("shop", SHOP, 0)] {
        let mut body = body_for(&[WA.to_owned()], 50);
        body["phone_number_id"] = json!(number);
        let campaigns = format!("/admin/businesses/{business}/campaigns");
        let (status, answer) = app.admin_post(&campaigns, &body).await;
        assert_eq!(status, 202, "{answer}");
        let id = answer["id"].as_str().expect("id").to_owned();
        let path = format!("{campaigns}/{id}");
        let report = drained_at(&app, &path, std::time::Duration::from_secs(30)).await;
        let sent = graph.sent();
        let sends = campaign_sends(&sent, &id);
        assert_eq!(sends.len(), reached, "{number}: {report}");
        assert!(sends.iter().all(|s| s.phone_number_id == number));
    }

    // MY DATA at the shop: the shop's conversation, nothing of the café's.
    say(&app, SHOP, "wamid.S4", text("MY DATA")).await;
    until("the copy", 60, async || graph.uploads().len() == 1).await;
    let upload = &graph.uploads()[0];
    assert_eq!(upload.phone_number_id, SHOP);
    let copy = String::from_utf8_lossy(&upload.file).into_owned();
    assert!(copy.contains("shoes in size 38"), "{copy}");
    assert!(
        !copy.contains("flat white"),
        "the café's words in the shop's copy"
    );

    // The admin API: each contact under its own business only; the
    // unprefixed route names the prefixed one.
    for (business, word, other) in [
        ("shop", "shoes", "flat white"),
        ("cafe", "flat white", "shoes"),
    ] {
        let (status, doc) = app
            .admin_get(&format!(
                "/admin/businesses/{business}/contacts/{WA}/export"
            ))
            .await;
        assert_eq!(status, 200, "{doc}");
        let doc = doc.to_string();
        assert!(
            doc.contains(word) && !doc.contains(other),
            "{business}: {doc}"
        );
    }
    let (status, answer) = app.admin_get(&format!("/admin/contacts/{WA}")).await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("/admin/businesses/"))
    );
    assert!(
        !answer.to_string().contains(WA),
        "the number echoed: {answer}"
    );
    let (status, _) = app
        .admin_get(&format!("/admin/businesses/bakery/contacts/{WA}"))
        .await;
    assert_eq!(status, 404, "a business that does not exist");

    // DELETE MY DATA at the shop: the café's contact stays.
    say(&app, SHOP, "wamid.S5", text("DELETE MY DATA")).await;
    until("the question", 60, async || {
        said_from(&graph, SHOP)
            .iter()
            .any(|t| t.contains("Delete everything?"))
    })
    .await;
    let yes = json!({ "type": "interactive", "interactive": { "type": "button_reply",
        "button_reply": { "id": "whatsify_erase_yes", "title": "Yes, delete it" } } });
    say(&app, SHOP, "wamid.S6", yes).await;
    let store = app.store();
    let shop = key(&app, "shop");
    // The suppression mark is written first, then the data goes.
    until("the shop's contact erased", 60, async || {
        store.suppressed(&shop).await.is_ok_and(|s| s.is_some())
            && store.profile(&shop).await.is_ok_and(|p| p.is_none())
    })
    .await;
    let cafe = key(&app, "cafe");
    assert!(store.suppressed(&cafe).await.expect("suppressed").is_none());
    assert!(store.profile(&cafe).await.expect("profile").is_some());
    assert_eq!(marketing(&app, "cafe").await, Some(true));
    let (status, _) = app
        .admin_get(&format!("/admin/businesses/shop/contacts/{WA}"))
        .await;
    assert_eq!(status, 404, "the shop's contact is gone");
    let (status, _) = app
        .admin_get(&format!("/admin/businesses/cafe/contacts/{WA}"))
        .await;
    assert_eq!(status, 200, "the café's contact is there");
    // The café still answers.
    let before = said_from(&graph, CAFE).len();
    say(&app, CAFE, "wamid.C3", text("hi")).await;
    until("the café's answer", 30, async || {
        said_from(&graph, CAFE).len() > before
    })
    .await;
    app.stop().await;
}
both_backends!(two, one_person_two_businesses);

/// A change for a number no business owns: 200 to Meta, kept (in the
/// system queue), counted, and no business answers it.
async fn an_unknown_number_is_kept_and_counted(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let (app, _cafe_flows) = app(backend, &graph).await;
    let counted = async || {
        let text = crate::metrics::scrape(&app).await;
        text.lines()
            .find(|l| l.starts_with("whatsify_webhook_requests_total{outcome=\"unknown_number\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = counted().await;
    // Meta's retry of it is a duplicate: counted again, kept once.
    // (The same body twice, as Meta retries it.)
    let body = to("3003003003", WA, "wamid.U1", text("hi"));
    for _ in 0..2 {
        let r = app.post_signed(&body).await;
        assert_eq!(r.status(), 200);
    }
    assert!(counted().await >= before + 2, "counted");
    let store = app.store();
    let kept = store
        .read(&whatsify::store::Queue::System, 10)
        .await
        .expect("system queue");
    assert_eq!(kept.len(), 1, "kept once");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        graph.sent().is_empty(),
        "nobody answers: {:?}",
        graph.sent()
    );
    for b in ["shop", "cafe"] {
        let k = key(&app, b);
        assert!(store.profile(&k).await.expect("profile").is_none(), "{b}");
        assert!(store.consent(&k).await.expect("ledger").is_empty(), "{b}");
    }
    app.stop().await;
}
both_backends!(unknown_number, an_unknown_number_is_kept_and_counted);

/// `GET /admin/businesses` lists each business with its numbers.
async fn the_businesses_are_listed(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let (app, _cafe_flows) = app(backend, &graph).await;
    let (status, list) = app.admin_get("/admin/businesses").await;
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list["businesses"]
        .as_array()
        .expect("businesses")
        .iter()
        .filter_map(|b| b["id"].as_str())
        .collect();
    assert_eq!(ids, ["shop", "cafe"]);
    assert_eq!(list["businesses"][1]["phone_number_ids"], json!([CAFE]));
    assert_eq!(list["businesses"][1]["flows"], json!(["cafe"]), "{list}");
    assert!(
        list["businesses"][0]["flows"]
            .as_array()
            .is_some_and(|f| f.contains(&json!("welcome")))
    );
    assert!(!list.to_string().contains("token"), "{list}");
    app.stop().await;
}
both_backends!(listed, the_businesses_are_listed);

/// A business on its own Meta app: its webhook `/webhook/cafe` answers the
/// handshake, takes deliveries signed with its own app secret (not the
/// service's), and routes only its own numbers; a business that does not
/// exist is 404.
async fn a_business_on_its_own_app(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let (app, _cafe_flows) = app(backend, &graph).await;
    let url = |path: &str| format!("{}{path}", app.address);
    let client = reqwest::Client::new();
    let handshake = |path: &str| {
        url(&format!(
            "{path}?hub.mode=subscribe&hub.verify_token={}&hub.challenge=1158201444",
            crate::helpers::VERIFY_TOKEN
        ))
    };
    let r = client
        .get(handshake("/webhook/cafe"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("text"), "1158201444");
    let r = client
        .get(handshake("/webhook/bakery"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
    let post = async |path: &str, secret: &str, body: Vec<u8>| {
        let signature = whatsify::crypto::signature::sign(secret, &body);
        client
            .post(url(path))
            .header("Content-Type", "application/json")
            .header("X-Hub-Signature-256", signature)
            .body(body)
            .send()
            .await
            .expect("post")
            .status()
    };
    let hi = to(CAFE, WA, "wamid.OWN1", text("hi"));
    // The service's secret does not sign the café's own webhook.
    let service = crate::helpers::APP_SECRET;
    assert_eq!(post("/webhook/cafe", service, hi.clone()).await, 401);
    assert_eq!(
        post("/webhook/bakery", CAFE_APP_SECRET, hi.clone()).await,
        404
    );
    assert_eq!(post("/webhook/cafe", CAFE_APP_SECRET, hi).await, 200);
    until("the café's answer", 30, async || {
        said_from(&graph, CAFE)
            .iter()
            .any(|t| t.contains("Welcome to the Corner Café"))
    })
    .await;
    // The café's app cannot speak for the shop's number.
    let forged = to(SHOP, WA, "wamid.OWN2", text("STOP"));
    assert_eq!(post("/webhook/cafe", CAFE_APP_SECRET, forged).await, 200);
    let kept = app
        .store()
        .read(&whatsify::store::Queue::System, 10)
        .await
        .expect("system queue");
    assert_eq!(kept.len(), 1, "kept as an unknown number");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        said_from(&graph, SHOP).is_empty(),
        "the shop answered a forged message"
    );
    assert_eq!(
        marketing(&app, "shop").await,
        None,
        "a forged STOP was recorded"
    );
    app.stop().await;
}
both_backends!(own_app, a_business_on_its_own_app);

/// The business scenarios on a real 3-master Redis Cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn businesses_on_a_redis_cluster() {
    let cluster = crate::helpers::RedisCluster::start();
    crate::on_cluster!(
        cluster,
        one_person_two_businesses,
        an_unknown_number_is_kept_and_counted,
        a_business_on_its_own_app,
    );
}

/// A consent or tag audience is read among the business's own contacts:
/// the same person, opted in at both, is reached by the shop's campaign
/// from the shop only; a second customer of the café only is not.
async fn audiences_are_the_business_s_own(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let (app, _cafe_flows) = app(backend, &graph).await;
    say(&app, SHOP, "wamid.S1", text("START")).await;
    say(&app, CAFE, "wamid.C1", text("START")).await;
    let other = "16505559090";
    let r = app
        .post_signed(&to(CAFE, other, "wamid.O1", text("START")))
        .await;
    assert_eq!(r.status(), 200);
    until("all opted in", 30, async || {
        marketing(&app, "shop").await == Some(true) && marketing(&app, "cafe").await == Some(true)
    })
    .await;
    let mut body = body_for(&[], 50);
    body["audience"] = json!({ "all_consenting": true });
    // No variables to fill: the audience has none.
    body["template"]["components"] = json!([]);
    let (status, answer) = app
        .admin_post("/admin/businesses/shop/campaigns", &body)
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["targeted"], 1, "{answer}");
    let id = answer["id"].as_str().expect("id").to_owned();
    let path = format!("/admin/businesses/shop/campaigns/{id}");
    drained_at(&app, &path, std::time::Duration::from_secs(30)).await;
    let sent = graph.sent();
    let sends = campaign_sends(&sent, &id);
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].phone_number_id, SHOP);
    assert_eq!(sends[0].body["to"], format!("+{WA}"));
    app.stop().await;
}
both_backends!(audiences, audiences_are_the_business_s_own);
