//! Every admin route per business: under `/admin/businesses/{id}/…` each
//! shows and acts on its business's contacts, campaigns, audit entries,
//! statistics and dead letters only; a business that does not exist is
//! 404 on every one of them; another business's contact or campaign is
//! 404; the unprefixed routes answer 409 naming the prefixed route while
//! several businesses are served, and work as before with one.

use serde_json::{Value, json};

use crate::businesses::{CAFE, SHOP, WA, key, said_from, say, text, to, two_businesses};
use crate::campaigns::body_for;
use crate::graph::FakeGraph;
use crate::helpers::{ADMIN_TOKEN, Backend, TestApp};
use crate::outbox::until;

/// Someone who writes to the café only.
const WA2: &str = "16505557878";

/// Every admin route that has a business: (method, the route after
/// `/admin` or `/admin/businesses/{business}`, as concrete and as the
/// route pattern the 409 names). `{c}` is a campaign id.
const ROUTES: [(&str, &str, &str); 14] = [
    ("GET", "/contacts/WA", "/contacts/{id}"),
    ("DELETE", "/contacts/WA", "/contacts/{id}"),
    ("POST", "/contacts/WA/consent", "/contacts/{id}/consent"),
    ("POST", "/contacts/WA/messages", "/contacts/{id}/messages"),
    ("GET", "/contacts/WA/messages", "/contacts/{id}/messages"),
    (
        "POST",
        "/contacts/WA/handoff/close",
        "/contacts/{id}/handoff/close",
    ),
    ("GET", "/contacts/WA/export", "/contacts/{id}/export"),
    ("POST", "/campaigns", "/campaigns"),
    ("GET", "/campaigns", "/campaigns"),
    ("GET", "/campaigns/{c}", "/campaigns/{id}"),
    ("DELETE", "/campaigns/{c}", "/campaigns/{id}"),
    ("GET", "/audit", "/audit"),
    ("GET", "/stats", "/stats"),
    ("GET", "/outbox/dead-letters", "/outbox/dead-letters"),
];

/// A request with the admin token (a JSON body for a POST): the status
/// and the JSON answer.
async fn call(app: &TestApp, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let url = format!("{}{path}", app.address);
    let req = match method {
        "GET" => app.client.get(url),
        "DELETE" => app.client.delete(url),
        _ => app.client.post(url).json(body),
    };
    let resp = req.bearer_auth(ADMIN_TOKEN).send().await.expect("sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A body each POST route would take.
fn body_of(route: &str) -> Value {
    match route {
        "/contacts/WA/consent" => json!({ "purpose": "marketing", "granted": false }),
        "/contacts/WA/messages" => json!({ "text": "hello from support" }),
        "/campaigns" => body_for(&[WA.to_owned()], 10),
        _ => json!({}),
    }
}

/// The two businesses, each message tried once (a failure is a dead
/// letter at once).
async fn app(backend: &Backend, graph: &FakeGraph) -> (TestApp, tempfile::TempDir) {
    graph.expect_token(SHOP, "shop-token-0123456789abcdef");
    graph.expect_token(CAFE, "cafe-token-0123456789abcdef");
    let cafe_flows = tempfile::tempdir().expect("temp dir");
    let settings = two_businesses(cafe_flows.path());
    let env: Vec<(&str, String)> = vec![
        ("WHATSIFY__META__GRAPH_API_BASE", graph.base.clone()),
        ("WHATSIFY__OUTBOX__MARK_READ", "false".into()),
        ("WHATSIFY__OUTBOX__MAX_ATTEMPTS", "1".into()),
    ];
    let app = crate::helpers::try_spawn_app_with_file(backend, &env, &settings, 2)
        .await
        .expect("app builds");
    (app, cafe_flows)
}

/// Today's statistics of a business.
async fn today(app: &TestApp, business: &str) -> Value {
    let (status, stats) = app
        .admin_get(&format!("/admin/businesses/{business}/stats"))
        .await;
    assert_eq!(status, 200, "{stats}");
    stats["days"][whatsify::store::stats::today()].clone()
}

/// The audit entries a business's log shows.
async fn audit(app: &TestApp, business: &str, query: &str) -> Vec<Value> {
    let (status, log) = app
        .admin_get(&format!("/admin/businesses/{business}/audit{query}"))
        .await;
    assert_eq!(status, 200, "{log}");
    log["entries"].as_array().cloned().unwrap_or_default()
}

/// One customer at both businesses and another at the café only: each
/// business's routes show its own contacts, campaigns, audit entries,
/// statistics, dead letters and metrics; every route refuses a business
/// that does not exist, names the prefixed route when called unprefixed,
/// and never finds another business's contact or campaign.
async fn each_business_sees_only_its_own(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let (app, _cafe_flows) = app(backend, &graph).await;
    say(&app, SHOP, "wamid.S1", text("START")).await;
    say(&app, CAFE, "wamid.C1", text("START")).await;
    let r = app
        .post_signed(&to(CAFE, WA2, "wamid.D1", text("hello")))
        .await;
    assert_eq!(r.status(), 200);
    until("the answers", 30, async || {
        !said_from(&graph, SHOP).is_empty() && !said_from(&graph, CAFE).is_empty()
    })
    .await;
    until("the café's second customer answered", 30, async || {
        graph
            .sent()
            .iter()
            .any(|s| s.body["to"] == format!("+{WA2}"))
    })
    .await;
    // The café's next answer fails once: a dead letter of the café's.
    graph.fail_next(&[(503, 2)]);
    say(&app, CAFE, "wamid.C2", text("a flat white please")).await;
    until("the café's dead letter", 30, async || {
        let (_, dead) = app
            .admin_get("/admin/businesses/cafe/outbox/dead-letters")
            .await;
        dead["dead_letters"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
    })
    .await;

    // Campaigns: the shop's from its own number (the default), the café
    // cannot send from the shop's.
    let (status, answer) = app
        .admin_post("/admin/businesses/shop/campaigns", &body_of("/campaigns"))
        .await;
    assert_eq!(status, 202, "{answer}");
    let shop_campaign = answer["id"].as_str().expect("id").to_owned();
    let mut from_shop = body_of("/campaigns");
    from_shop["phone_number_id"] = json!(SHOP);
    let (status, answer) = app
        .admin_post("/admin/businesses/cafe/campaigns", &from_shop)
        .await;
    assert_eq!(status, 400, "{answer}");
    let listed = async |business: &str| {
        let (status, list) = app
            .admin_get(&format!("/admin/businesses/{business}/campaigns"))
            .await;
        assert_eq!(status, 200, "{list}");
        let ids = list["campaigns"].as_array().cloned().unwrap_or_default();
        ids.iter()
            .filter_map(|c| c["id"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    assert_eq!(listed("shop").await, vec![shop_campaign.clone()]);
    assert!(
        listed("cafe").await.is_empty(),
        "the shop's campaign at the café"
    );
    let (status, report) = app
        .admin_get(&format!("/admin/businesses/shop/campaigns/{shop_campaign}"))
        .await;
    assert_eq!(status, 200, "{report}");
    let at_cafe = format!("/admin/businesses/cafe/campaigns/{shop_campaign}");
    assert_eq!(app.admin_get(&at_cafe).await.0, 404);
    assert_eq!(app.admin_delete(&at_cafe).await, 404);
    let (_, report) = app
        .admin_get(&format!("/admin/businesses/shop/campaigns/{shop_campaign}"))
        .await;
    assert_ne!(
        report["status"], "cancelled",
        "the café cancelled the shop's"
    );

    // Contacts: the café's second customer is no contact of the shop's.
    let contact = |b: &str, wa: &str| format!("/admin/businesses/{b}/contacts/{wa}");
    assert_eq!(app.admin_get(&contact("cafe", WA2)).await.0, 200);
    assert_eq!(app.admin_get(&contact("shop", WA2)).await.0, 404);
    let export = format!("{}/export", contact("shop", WA2));
    assert_eq!(app.admin_get(&export).await.0, 404);

    // Audit: each log holds its own business's entries only; a contact
    // is looked up in the business asked.
    let (shop_key, cafe_key) = (key(&app, "shop"), key(&app, "cafe"));
    for (business, own, other) in [
        ("shop", &shop_key, &cafe_key),
        ("cafe", &cafe_key, &shop_key),
    ] {
        let entries = audit(&app, business, "").await;
        assert!(
            entries
                .iter()
                .any(|e| e["kind"] == "consent_given" && e["contact"] == own.as_str()),
            "{business}: {entries:?}"
        );
        assert!(
            entries
                .iter()
                .all(|e| e["contact"] != other.as_str() && e["business"] == business),
            "{business} shows another business's entries: {entries:?}"
        );
        let mine = audit(&app, business, &format!("?contact={WA}")).await;
        assert!(!mine.is_empty() && mine.iter().all(|e| e["contact"] == own.as_str()));
    }
    assert!(
        audit(&app, "shop", &format!("?contact={WA2}"))
            .await
            .is_empty()
    );

    // Statistics: each business its own opt-in and messages.
    let (shop, cafe) = (today(&app, "shop").await, today(&app, "cafe").await);
    assert_eq!(shop["opt_ins"], 1, "{shop}");
    assert_eq!(cafe["opt_ins"], 1, "{cafe}");
    let n = |v: &Value| v["messages_in"].as_u64().unwrap_or(0);
    assert!(n(&shop) >= 1 && n(&cafe) >= n(&shop) + 2, "{shop} {cafe}");

    // Dead letters: the café's, from its number; none at the shop.
    let (_, dead) = app
        .admin_get("/admin/businesses/cafe/outbox/dead-letters")
        .await;
    let dead = dead["dead_letters"].as_array().cloned().unwrap_or_default();
    assert!(
        dead.iter().all(|d| d["phone_number_id"] == CAFE),
        "{dead:?}"
    );
    let (_, none) = app
        .admin_get("/admin/businesses/shop/outbox/dead-letters")
        .await;
    assert_eq!(none["dead_letters"], json!([]), "{none}");

    // Metrics: by business id, never a name or number.
    let metrics = crate::metrics::scrape(&app).await;
    for business in ["shop", "cafe"] {
        let line = format!("whatsify_events_total{{business=\"{business}\",event=\"opt_ins\"}}");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
    assert!(metrics.contains("whatsify_dead_letters_total{business=\"cafe\"}"));
    assert!(
        !metrics.contains("Corner Caf"),
        "a business name in the metrics"
    );

    // A STOP at the shop after its campaign reached the customer counts
    // against that campaign (the shop's opt-out counter is its own).
    let report_path = format!("/admin/businesses/shop/campaigns/{shop_campaign}");
    crate::campaigns::drained_at(&app, &report_path, std::time::Duration::from_secs(30)).await;
    say(&app, SHOP, "wamid.S2", text("STOP")).await;
    until("the campaign's opt-out", 30, async || {
        app.admin_get(&report_path).await.1["opt_outs"] == 1
    })
    .await;
    assert_eq!(today(&app, "shop").await["opt_outs"], 1);
    assert_eq!(today(&app, "cafe").await["opt_outs"], json!(null));
    // An erasure at the café is the café's.
    assert_eq!(app.admin_delete(&contact("cafe", WA2)).await, 200);
    assert_eq!(today(&app, "cafe").await["erasures"], 1);
    assert_eq!(today(&app, "shop").await["erasures"], json!(null));

    // Every route: 404 for a business that does not exist, 409 naming
    // the prefixed route unprefixed. Neither changes anything.
    for (method, route, pattern) in ROUTES {
        let route = route.replace("WA", WA).replace("{c}", &shop_campaign);
        let body = body_of(&route.replace(WA, "WA"));
        let (status, answer) = call(
            &app,
            method,
            &format!("/admin/businesses/bakery{route}"),
            &body,
        )
        .await;
        assert_eq!(status, 404, "{method} {route}: {answer}");
        let (status, answer) = call(&app, method, &format!("/admin{route}"), &body).await;
        assert_eq!(status, 409, "{method} {route}: {answer}");
        let named = format!("/admin/businesses/{{business}}{pattern}");
        assert!(
            answer["error"].as_str().is_some_and(|e| e.contains(&named)),
            "{method} {route}: {answer}"
        );
        assert!(
            !answer.to_string().contains(WA),
            "the number echoed: {answer}"
        );
    }
    assert_eq!(
        listed("shop").await.len(),
        1,
        "a refused POST made a campaign"
    );
    assert_eq!(
        app.admin_get(&contact("shop", WA)).await.0,
        200,
        "still there"
    );
    app.stop().await;
}
crate::both_backends!(two, each_business_sees_only_its_own);

/// The same on a real 3-master Redis Cluster (the statistics, audit and
/// campaign counters across its slots).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_routes_on_a_redis_cluster() {
    let cluster = crate::helpers::RedisCluster::start();
    crate::on_cluster!(cluster, each_business_sees_only_its_own,);
}

/// With one business served, the unprefixed routes are its own, and the
/// prefixed ones (`default`) answer the same.
async fn one_business_keeps_the_unprefixed_routes(backend: &Backend) {
    let app = crate::helpers::spawn_app(backend).await;
    for route in ["/stats", "/campaigns", "/outbox/dead-letters"] {
        let (status, plain) = app.admin_get(&format!("/admin{route}")).await;
        assert_eq!(status, 200, "{route}: {plain}");
        let (status, prefixed) = app
            .admin_get(&format!("/admin/businesses/default{route}"))
            .await;
        assert_eq!(status, 200, "{route}: {prefixed}");
        assert_eq!(plain, prefixed, "{route}");
    }
    let (status, log) = app.admin_get("/admin/audit").await;
    assert_eq!(status, 200, "{log}");
    let (status, _) = app.admin_get("/admin/businesses/shop/audit").await;
    assert_eq!(status, 404, "a business that does not exist");
    app.stop().await;
}
crate::both_backends!(one, one_business_keeps_the_unprefixed_routes);
