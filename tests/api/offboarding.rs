//! Taking a business off the system: `DELETE /admin/businesses/{id}`
//! discards its webhooks, cancels its campaigns, deletes every record and
//! data key of its contacts, writes a deletion certificate into the audit
//! log, and leaves the other business untouched; a scan of every Redis key
//! or embedded table finds nothing of it. A removal cut short is finished
//! by the next start.

use std::sync::Arc;

use serde_json::{Value, json};
use whatsify::domain::{BusinessId, ContactId, ContactKey};
use whatsify::store::Store;
use whatsify::store::embedded::EmbeddedStore;

use crate::businesses::{CAFE, SHOP, WA, key, marketing, said_from, say, text, to};
use crate::campaigns::body_for;
use crate::graph::FakeGraph;
use crate::helpers::{Backend, TestApp};
use crate::outbox::{now, until};

/// A second customer, of the café only.
const WA2: &str = "16505557878";

/// What may name the café after its removal: the audit log (kept whole:
/// its chain would break, and it holds pseudonyms whose data keys are
/// destroyed, never content) and the removal record the certificate is
/// made from.
fn kept_on_purpose(place: &str) -> bool {
    ["{audit}", "{meta}:removed", "AUDIT", "REMOVALS"]
        .iter()
        .any(|p| place.contains(p))
}

/// Every record of the store as (place, text): every embedded table, or
/// every key under the test's prefix on each Redis node.
async fn every_record(
    backend: &Backend,
    embedded: Option<&EmbeddedStore>,
) -> Vec<(String, String)> {
    let (urls, prefix) = match backend {
        Backend::Embedded(_) => {
            return embedded
                .expect("the embedded store")
                .every_record()
                .await
                .expect("records");
        }
        Backend::Redis { url, prefix } => (vec![url.clone()], prefix.clone()),
        Backend::Cluster { urls, prefix } => {
            (urls.split(',').map(str::to_owned).collect(), prefix.clone())
        }
    };
    let mut out = Vec::new();
    for url in urls {
        let mut conn = redis::Client::open(url.as_str())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let mut names: Vec<String> = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await
                .expect("scan");
            names.extend(page);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        for name in names {
            let kind: String = redis::cmd("TYPE")
                .arg(&name)
                .query_async(&mut conn)
                .await
                .expect("type");
            let read = match kind.as_str() {
                "string" => redis::cmd("GET").arg(&name).clone(),
                "hash" => redis::cmd("HGETALL").arg(&name).clone(),
                "list" => redis::cmd("LRANGE").arg(&name).arg(0).arg(-1).clone(),
                "set" => redis::cmd("SMEMBERS").arg(&name).clone(),
                "zset" => redis::cmd("ZRANGE").arg(&name).arg(0).arg(-1).clone(),
                "stream" => redis::cmd("XRANGE").arg(&name).arg("-").arg("+").clone(),
                _ => continue,
            };
            let value: redis::Value = read.query_async(&mut conn).await.expect("read");
            out.push((name.clone(), format!("{name} => {value:?}")));
        }
    }
    out
}

/// What names the café or its customers: their contact keys, the café's
/// number.
fn needles(app: &TestApp) -> Vec<String> {
    let cafe = BusinessId::parse("cafe").expect("id");
    let wa2 = ContactId::from_parts(Some(WA2), None).expect("wa_id");
    vec![
        key(app, "cafe").as_str().to_owned(),
        app.state
            .pseudonymizer
            .contact_key_in(&cafe, &wa2)
            .as_str()
            .to_owned(),
        CAFE.to_owned(),
    ]
}

fn the_cafe_campaign() -> Value {
    let mut body = body_for(&[WA.to_owned(), WA2.to_owned()], 50);
    body["phone_number_id"] = json!(CAFE);
    // Next week: still waiting when the café is removed.
    let at = now() + 7 * 86_400;
    let day = whatsify::store::stats::day(at);
    body["send_at"] = json!(format!("{day}T09:00:00Z"));
    body
}

async fn certificates(app: &TestApp, business: &str) -> Vec<Value> {
    let (status, log) = app
        .admin_get(&format!("/admin/businesses/{business}/audit?limit=500"))
        .await;
    assert_eq!(status, 200, "{log}");
    log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["kind"] == "business_removed")
        .cloned()
        .collect()
}

/// Two businesses, one customer writing to both and another to the café
/// only, a café campaign waiting: removing the café deletes all of it and
/// nothing of the shop's.
async fn removing_a_business(app: &TestApp, graph: &FakeGraph) {
    say(app, SHOP, "wamid.S1", text("START")).await;
    say(app, CAFE, "wamid.C1", text("START")).await;
    say(app, SHOP, "wamid.S2", text("shoes in size 38 please")).await;
    say(app, CAFE, "wamid.C2", text("a flat white please")).await;
    let r = app
        .post_signed(&to(CAFE, WA2, "wamid.D1", text("hello café")))
        .await;
    assert_eq!(r.status(), 200);
    until("both answered", 30, async || {
        !said_from(graph, CAFE).is_empty() && marketing(app, "cafe").await == Some(true)
    })
    .await;
    let (status, answer) = app
        .admin_post("/admin/businesses/cafe/campaigns", &the_cafe_campaign())
        .await;
    assert_eq!(status, 202, "{answer}");
    // A request logged at the café's privacy desk.
    let today = whatsify::domain::desk::format_date(whatsify::domain::desk::day_of(now()));
    let desk = json!({"kind": "access", "contact": WA, "channel": "email", "reference": "T-9", "received": today});
    let (status, answer) = app.admin_post("/admin/businesses/cafe/desk", &desk).await;
    assert_eq!(status, 201, "{answer}");
    let (_, list) = app.admin_get("/admin/businesses").await;
    assert_eq!(list["businesses"][0]["contacts"], 1, "{list}");
    assert_eq!(list["businesses"][1]["contacts"], 2, "{list}");

    // The id must be repeated; a business that does not exist is 404.
    assert_eq!(app.admin_delete("/admin/businesses/cafe").await, 400);
    assert_eq!(
        app.admin_delete("/admin/businesses/cafe?confirm=shop")
            .await,
        400
    );
    assert_eq!(
        app.admin_delete("/admin/businesses/bakery?confirm=bakery")
            .await,
        404
    );
    let (status, removal) = app
        .admin_delete_json("/admin/businesses/cafe?confirm=cafe")
        .await;
    assert_eq!(status, 200, "{removal}");
    assert_eq!(removal["status"], "removed", "{removal}");
    assert_eq!(removal["deleted"]["contacts"], 2, "{removal}");
    assert_eq!(removal["deleted"]["campaigns"], 1, "{removal}");
    let desk = app.store().docs("desk:cafe").await.expect("store");
    assert!(desk.is_empty(), "the café's desk is dropped");

    // Its webhooks: 200, discarded, counted; nobody answers.
    let before = said_from(graph, CAFE).len();
    say(app, CAFE, "wamid.C9", text("anyone there?")).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(said_from(graph, CAFE).len(), before, "the café answered");
    let metrics = crate::metrics::scrape(app).await;
    assert!(
        metrics.contains("whatsify_webhook_requests_total{outcome=\"business_removed\"}"),
        "not counted"
    );

    // The shop is untouched: its contact, consent and conversation.
    assert_eq!(marketing(app, "shop").await, Some(true));
    let (status, doc) = app
        .admin_get(&format!("/admin/businesses/shop/contacts/{WA}/export"))
        .await;
    assert_eq!(status, 200, "{doc}");
    assert!(doc.to_string().contains("shoes"), "{doc}");
    let (status, _) = app
        .admin_get(&format!("/admin/businesses/cafe/contacts/{WA}"))
        .await;
    assert_eq!(status, 404, "the café's contact is gone");
    let shop_before = said_from(graph, SHOP).len();
    say(app, SHOP, "wamid.S3", text("hi")).await;
    until("the shop still answers", 30, async || {
        said_from(graph, SHOP).len() > shop_before
    })
    .await;

    // The certificate: what and how much, when; once, even when the
    // removal is asked for again (which changes nothing).
    let certs = certificates(app, "cafe").await;
    assert_eq!(certs.len(), 1, "{certs:?}");
    let detail: Value =
        serde_json::from_str(certs[0]["detail"].as_str().expect("detail")).expect("json");
    assert_eq!(detail["business"], "cafe");
    assert_eq!(detail["deleted"]["contacts"], 2);
    assert!(detail["finished_at"].as_u64() >= detail["started_at"].as_u64());
    let (status, again) = app
        .admin_delete_json("/admin/businesses/cafe?confirm=cafe")
        .await;
    assert_eq!((status, &again), (200, &removal));
    assert_eq!(certificates(app, "cafe").await.len(), 1);
}

/// Nothing of the café is left: no key, table row or value names its
/// customers' contact keys or its number, but for the audit log and the
/// removal record.
fn nothing_left(records: &[(String, String)], needles: &[String]) {
    let left: Vec<&(String, String)> = records
        .iter()
        .filter(|(place, text)| {
            !kept_on_purpose(place) && needles.iter().any(|n| text.contains(n.as_str()))
        })
        .collect();
    assert!(left.is_empty(), "the café's records are left: {left:#?}");
    // The shop's are there (the scan reads something).
    assert!(records.len() > 10, "{records:?}");
}

async fn on_redis(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let (app, _flows) = crate::businesses::app(backend, &graph).await;
    removing_a_business(&app, &graph).await;
    let needles = needles(&app);
    nothing_left(&every_record(backend, None).await, &needles);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_business_on_redis() {
    let b = crate::helpers::redis();
    on_redis(&b.backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_business_on_a_redis_cluster() {
    let cluster = crate::helpers::RedisCluster::start();
    crate::on_cluster!(cluster, on_redis,);
}

/// The server with the two businesses on an embedded store the test
/// holds too (to read every table).
async fn on_embedded_store(
    backend: &Backend,
    graph: &FakeGraph,
    store: Arc<EmbeddedStore>,
) -> (TestApp, tempfile::TempDir) {
    graph.expect_token(SHOP, "shop-token-0123456789abcdef");
    graph.expect_token(CAFE, "cafe-token-0123456789abcdef");
    let flows = tempfile::tempdir().expect("temp dir");
    let toml = crate::businesses::two_businesses(flows.path());
    let env: Vec<(&str, String)> = vec![
        ("WHATSIFY__META__GRAPH_API_BASE", graph.base.clone()),
        ("WHATSIFY__OUTBOX__MARK_READ", "false".into()),
    ];
    let app = crate::helpers::spawn_app_on_store_with_file(backend, &env, &toml, store, 2).await;
    (app, flows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_business_on_the_embedded_store() {
    let b = crate::helpers::embedded();
    let Backend::Embedded(path) = &b.backend else {
        unreachable!()
    };
    let store = Arc::new(EmbeddedStore::open(path).expect("store"));
    let graph = FakeGraph::start().await;
    let (app, _flows) = on_embedded_store(&b.backend, &graph, store.clone()).await;
    removing_a_business(&app, &graph).await;
    let needles = needles(&app);
    nothing_left(&every_record(&b.backend, Some(&store)).await, &needles);
    app.stop().await;
}

/// A removal cut short (the record written, nothing deleted yet: a crash
/// right after `DELETE` began) is finished by the next start, with its
/// certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_cut_short_is_finished_at_the_next_start() {
    let b = crate::helpers::redis();
    let graph = FakeGraph::start().await;
    let (app, _flows) = crate::businesses::app(&b.backend, &graph).await;
    say(&app, CAFE, "wamid.C1", text("hello")).await;
    let cafe: ContactKey = key(&app, "cafe");
    let store: Arc<dyn Store> = app.store();
    until("the café's contact", 30, async || {
        store.owner(&cafe).await.ok().flatten().is_some()
    })
    .await;
    // The first step of a removal, as `DELETE` takes it, and no more.
    let remover = whatsify::offboard::Remover {
        store: store.as_ref(),
        keyring: &app.state.keyring,
        audit: &app.state.audit,
        clock: &app.state.clock,
        hooks: &app.state.hooks,
        actor: whatsify::domain::audit::Actor::Admin,
        by: None,
    };
    let cafe_id = BusinessId::parse("cafe").expect("id");
    remover
        .begin(&cafe_id, &[CAFE.to_owned()])
        .await
        .expect("begun");
    app.state.shutdown.trigger();
    app.stop().await;
    // The next start finishes it, even with the café's entry gone from
    // the settings: its number is still discarded, its certificate read.
    let flows = tempfile::tempdir().expect("temp dir");
    let two = crate::businesses::two_businesses(flows.path());
    let shop_only = two
        .split("\n[[businesses]]\nid = \"cafe\"")
        .next()
        .expect("the shop's entry");
    let again = crate::integrations::app_with_receivers(&b.backend, &graph, shop_only).await;
    until("the removal finished", 30, async || {
        let (_, r) = again.admin_get("/admin/businesses/cafe/removal").await;
        r["status"] == "removed"
    })
    .await;
    assert!(store.data_key(&cafe).await.expect("key").is_none());
    assert!(store.owner(&cafe).await.expect("owner").is_none());
    assert_eq!(certificates(&again, "cafe").await.len(), 1);
    say(&again, CAFE, "wamid.C2", text("hello again")).await;
    let kept = store
        .read(&whatsify::store::Queue::System, 10)
        .await
        .expect("system queue");
    assert!(kept.is_empty(), "kept as an unknown number: {kept:?}");
    assert!(store.data_key(&cafe).await.expect("key").is_none());
    again.stop().await;
}

/// `whatsify business remove ID`, run beside a server on the same Redis:
/// the removal done, the certificate written; the server discards the
/// business's webhooks from then on (it reads the removal within seconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_removes_a_business() {
    let b = crate::helpers::redis();
    let graph = FakeGraph::start().await;
    let (app, flows) = crate::businesses::app(&b.backend, &graph).await;
    say(&app, CAFE, "wamid.C1", text("hello")).await;
    let cafe = key(&app, "cafe");
    let store = app.store();
    until("the café's contact", 30, async || {
        store.data_key(&cafe).await.ok().flatten().is_some()
    })
    .await;
    let file = flows.path().join("whatsify.toml");
    std::fs::write(&file, crate::businesses::two_businesses(flows.path())).expect("write");
    let run = |id: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_whatsify"))
            .args(["business", "remove", id, "--config"])
            .arg(&file)
            .envs(crate::helpers::test_env(&b.backend, &[]))
            .output()
            .expect("whatsify runs")
    };
    let unknown = run("bakery");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no business has the id"));
    let out = run("cafe");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("business cafe removed: 1 contacts"), "{said}");
    assert!(store.data_key(&cafe).await.expect("key").is_none());
    assert_eq!(certificates(&app, "cafe").await.len(), 1);
    // Run again: nothing more to do, the same answer.
    let again = run("cafe");
    assert!(String::from_utf8_lossy(&again.stdout).contains("1 contacts"));
    assert_eq!(certificates(&app, "cafe").await.len(), 1);
    // The running server learns of it and discards the café's webhooks.
    tokio::time::sleep(whatsify::offboard::removed::REFRESH * 2).await;
    let before = said_from(&graph, CAFE).len();
    say(&app, CAFE, "wamid.C2", text("anyone?")).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(said_from(&graph, CAFE).len(), before);
    assert!(store.data_key(&cafe).await.expect("key").is_none());
    app.stop().await;
}

/// Receivers bound to a business (`business = "…"`): each gets only its
/// business's contacts' events, and the café's is told when the café is
/// removed; a receiver naming no business of the settings stops start-up.
async fn receivers_of_each_business(backend: &Backend) {
    use crate::integrations::Receiver;
    let graph = FakeGraph::start().await;
    graph.expect_token(SHOP, "shop-token-0123456789abcdef");
    graph.expect_token(CAFE, "cafe-token-0123456789abcdef");
    let (shop_crm, cafe_crm) = (Receiver::start(11).await, Receiver::start(12).await);
    let flows = tempfile::tempdir().expect("temp dir");
    let bound = |r: &Receiver, name: &str, business: &str| {
        format!(
            "{}business = {business:?}\n",
            r.settings(name, &["consent.changed", "contact.erased"], &[])
        )
    };
    let toml = format!(
        "{}\n{}\n{}",
        crate::businesses::two_businesses(flows.path()),
        bound(&shop_crm, "shop-crm", "shop"),
        bound(&cafe_crm, "cafe-crm", "cafe"),
    );
    let app = crate::integrations::app_with_receivers(backend, &graph, &toml).await;
    say(&app, SHOP, "wamid.S1", text("START")).await;
    say(&app, CAFE, "wamid.C1", text("START")).await;
    until("each business's consent event", 30, async || {
        !shop_crm.of("consent.changed").is_empty() && !cafe_crm.of("consent.changed").is_empty()
    })
    .await;
    for (crm, business) in [(&shop_crm, "shop"), (&cafe_crm, "cafe")] {
        let contacts: Vec<Value> = crm
            .of("consent.changed")
            .iter()
            .map(|e| e["data"]["contact_id"].clone())
            .collect();
        assert_eq!(
            contacts,
            [json!(key(&app, business).as_str())],
            "{business}"
        );
    }
    let (status, removal) = app
        .admin_delete_json("/admin/businesses/cafe?confirm=cafe")
        .await;
    assert_eq!(status, 200, "{removal}");
    let told = cafe_crm.of("business.removed");
    assert_eq!(told.len(), 1, "{:?}", cafe_crm.got());
    assert_eq!(told[0]["data"]["business"], "cafe");
    assert!(cafe_crm.got().iter().all(|g| g.verified), "signed");
    assert!(shop_crm.of("business.removed").is_empty());
    let certs = certificates(&app, "cafe").await;
    assert!(
        certs[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("\"receivers_told\":[\"cafe-crm\"]"))
    );
    app.stop().await;

    // A receiver bound to a business the settings do not have.
    let file = flows.path().join("bad.toml");
    let bad = format!(
        "{}\n{}",
        crate::businesses::two_businesses(flows.path()),
        bound(&shop_crm, "x", "bakery")
    );
    std::fs::write(&file, bad).expect("write");
    let err =
        whatsify::config::Settings::load_from(Some(&file), crate::helpers::test_env(backend, &[]))
            .map(|_| ())
            .expect_err("refused")
            .to_string();
    assert!(err.contains("bakery") && err.contains("x"), "{err}");
}
crate::both_backends!(receivers, receivers_of_each_business);

/// The owner index keeps nothing past retention: the owner of a contact
/// with neither a data key nor a suppression is forgotten by the
/// retention job; a known or suppressed contact keeps theirs.
async fn owners_of_expired_contacts_are_forgotten(backend: &Backend) {
    let app = crate::helpers::spawn_app(backend).await;
    let store = app.store();
    let shop = BusinessId::parse("shop").expect("id");
    let contact = |n: u8| ContactKey::parse(&format!("{n:02x}").repeat(16)).expect("key");
    let (expired, known, erased) = (contact(1), contact(2), contact(3));
    store
        .enlist(&shop, &[expired.clone(), known.clone(), erased.clone()])
        .await
        .expect("enlist");
    store
        .create_data_key(&known, vec![7; 60], std::time::Duration::from_secs(3600))
        .await
        .expect("key");
    store.erase(&erased, &shop, now()).await.expect("erase");
    // The first pass only notes it (a contact is enlisted just before its
    // first data key is stored); a pass a grace period later forgets it.
    let prune = async |at: u64| {
        whatsify::privacy::retention::prune_owners(store.as_ref(), at)
            .await
            .expect("pruned")
    };
    assert_eq!(prune(now()).await, 0);
    assert_eq!(
        store.owner(&expired).await.expect("owner").as_deref(),
        Some("shop")
    );
    assert_eq!(prune(now() + 60).await, 0, "within the grace period");
    assert_eq!(prune(now() + whatsify::store::PRUNE_GRACE + 1).await, 1);
    assert_eq!(store.owner(&expired).await.expect("owner"), None);
    for kept in [&known, &erased] {
        assert_eq!(
            store.owner(kept).await.expect("owner").as_deref(),
            Some("shop")
        );
    }
    let counts = store.member_counts().await.expect("counts");
    assert_eq!(counts, [("shop".to_owned(), 2)]);
    app.stop().await;
}
crate::both_backends!(owners_pruned, owners_of_expired_contacts_are_forgotten);
