//! An upgrade: today's server on stores that the previous release
//! (30a4a7d, the last before businesses) wrote with its own binary
//! (`scripts/make-upgrade-fixture`; see
//! `tests/fixtures/previous-release/README.md`), with the same settings,
//! read as an operator and a customer would. Without `[[businesses]]`
//! everything is the `default` business's; with a `[[businesses]]` entry
//! `default` owning the old number beside another business, the old
//! contacts are still the default business's.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::campaigns::{body_for, campaign_sends, drained_at, per_recipient};
use crate::graph::FakeGraph;
use crate::helpers::{ACCESS_TOKEN, Backend, TestApp, TestRedis, try_spawn_app_with_file};
use crate::outbox::{now, until};

/// The business's number, and the customers of the fixture.
const NUMBER: &str = "106540352242922";
/// Joined the club, gave marketing consent in the flow, and was left with
/// the flow's last question (their shoe size) open.
const ANA: &str = "15550100001";
/// Sent START, then STOP.
const BRUNO: &str = "15550100002";
/// Asked for their data to be deleted, and confirmed.
const CARLA: &str = "15550100003";
/// Known by their number and their business-scoped user id; declined
/// offers in the flow, then gave consent to the support team.
const DORA: &str = "15550100004";
const DORA_USER: &str = "US.55501000040000000004";
/// The second business of the two-business settings.
const CAFE: &str = "2002002002";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/previous-release")
        .join(name)
}

/// The settings the previous release ran with.
fn settings() -> String {
    std::fs::read_to_string(fixture("whatsify.toml")).expect("whatsify.toml")
}

/// The same settings, with the old business declared as `default` (owning
/// the old number) beside a café.
fn two_businesses(cafe_flows: &Path) -> String {
    std::fs::write(
        cafe_flows.join("cafe.yaml"),
        "id: cafe\ntriggers:\n  - default: true\nsteps:\n  - id: hello\n    say: \"Welcome to the café\"\n",
    )
    .expect("write");
    format!(
        r#"{}
[[businesses]]
id = "default"
name = "Acme Shoes"
phone_number_ids = ["{NUMBER}"]
access_token = "{ACCESS_TOKEN}"
flows_dir = "{}"

[[businesses]]
id = "cafe"
name = "Corner Café"
phone_number_ids = ["{CAFE}"]
access_token = "cafe-token-0123456789abcdef"
flows_dir = "{}"
"#,
        settings(),
        fixture("flows").display(),
        cafe_flows.display()
    )
}

/// A copy of the embedded store the previous release wrote.
fn embedded_copy() -> (Backend, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::copy(
        fixture("embedded/whatsify.redb"),
        data.join("whatsify.redb"),
    )
    .expect("copy the fixture");
    (Backend::Embedded(data), dir)
}

/// Loads `redis.dump` (every key the previous release left, DUMPed) under
/// `prefix`: each key RESTOREd with its absolute expiry, as it would have
/// lived on.
fn restore(con: &mut dyn ::redis::ConnectionLike, prefix: &str) {
    let dump = std::fs::read_to_string(fixture("redis.dump")).expect("redis.dump");
    let mut keys = 0;
    for line in dump.lines() {
        let mut fields = line.split('\t');
        let (Some(name), Some(expiry), Some(payload)) =
            (fields.next(), fields.next(), fields.next())
        else {
            panic!("redis.dump: a line is not KEY, EXPIRY, PAYLOAD: {line}");
        };
        let expiry: u64 = expiry.parse().expect("expiry in Unix ms");
        let payload = base64::engine::general_purpose::STANDARD
            .decode(payload)
            .expect("base64");
        let _: () = ::redis::cmd("RESTORE")
            .arg(format!("{prefix}{name}"))
            .arg(expiry)
            .arg(payload)
            .arg("ABSTTL")
            .query(con)
            .expect("RESTORE");
        keys += 1;
    }
    assert!(keys > 0, "redis.dump is empty");
}

/// The old Redis store under a fresh prefix of the test Redis.
fn redis_copy() -> (Backend, TestRedis) {
    let r = TestRedis::new();
    let client = ::redis::Client::open(r.url.as_str()).expect("url");
    let mut con = client.get_connection().expect("redis");
    restore(&mut con, &r.prefix);
    let backend = Backend::Redis {
        url: r.url.clone(),
        prefix: r.prefix.clone(),
    };
    (backend, r)
}

/// Today's server on `backend` with `toml`, its replies going to `graph`.
async fn serve(backend: &Backend, graph: &FakeGraph, toml: &str) -> TestApp {
    let env: Vec<(&str, String)> = vec![
        ("WHATSIFY__META__GRAPH_API_BASE", graph.base.clone()),
        (
            "WHATSIFY__FLOWS__DIR",
            fixture("flows").display().to_string(),
        ),
        ("WHATSIFY__OUTBOX__RETRY_BASE", "10ms".into()),
        ("WHATSIFY__OUTBOX__RETRY_CAP", "200ms".into()),
    ];
    try_spawn_app_with_file(backend, &env, toml, 2)
        .await
        .expect("today's server starts on the old store")
}

async fn get(app: &TestApp, path: &str) -> Value {
    let (status, doc) = app.admin_get(path).await;
    assert_eq!(status, 200, "{path}: {doc}");
    doc
}

/// What the operator reads of the old contacts under `contacts` (the
/// contact routes' prefix): profiles, tags, consent ledgers, the old
/// history in the export, one contact by either of its ids, and the
/// erased contact gone.
/// Returns when the fixture was made (Ana's first message).
async fn old_contacts_read(app: &TestApp, contacts: &str, started: u64) -> u64 {
    let ana = get(app, &format!("{contacts}/{ANA}")).await;
    let profile = &ana["profile"];
    assert_eq!(profile["whatsapp_name"], "Ana", "{ana}");
    assert_eq!(profile["tags"], json!(["club"]), "{ana}");
    assert!(
        profile["first_seen"].as_u64().is_some_and(|t| t < started),
        "{ana}"
    );
    assert_eq!(ana["consent"]["marketing"]["granted"], true, "{ana}");
    assert_eq!(ana["consent"]["marketing"]["policy_version"], "1", "{ana}");
    let export = get(app, &format!("{contacts}/{ANA}/export"))
        .await
        .to_string();
    assert!(export.contains("Lisbon"), "the old history: {export}");
    assert!(export.contains("club"), "{export}");

    let bruno = get(app, &format!("{contacts}/{BRUNO}")).await;
    let ledger: Vec<bool> = bruno["ledger"]
        .as_array()
        .expect("ledger")
        .iter()
        .filter(|c| c["purpose"] == "marketing")
        .filter_map(|c| c["granted"].as_bool())
        .collect();
    assert_eq!(ledger, [true, false], "START then STOP: {bruno}");
    assert_eq!(bruno["consent"]["marketing"]["granted"], false, "{bruno}");

    let (status, doc) = app.admin_get(&format!("{contacts}/{CARLA}")).await;
    assert_eq!(status, 404, "the erased contact: {doc}");

    let dora = get(app, &format!("{contacts}/{DORA_USER}")).await;
    assert_eq!(
        dora["contact"],
        get(app, &format!("{contacts}/{DORA}")).await["contact"]
    );
    assert_eq!(dora["consent"]["marketing"]["granted"], true, "{dora}");
    assert_eq!(dora["consent"]["marketing"]["source"], "admin", "{dora}");
    profile["first_seen"].as_u64().unwrap_or_default()
}

/// The audit log the previous release wrote verifies whole and is listed.
async fn old_audit_reads(app: &TestApp, contacts: &str, started: u64) {
    let base = contacts.strip_suffix("/contacts").unwrap_or("/admin");
    let full = get(app, &format!("{base}/audit?verify=full")).await;
    assert_eq!(full["chain"]["intact"], true, "{full}");
    assert_eq!(full["chain"]["complete"], true, "{full}");
    let page = get(app, &format!("{base}/audit?limit=1000")).await;
    let old: Vec<&str> = page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["at"].as_u64().is_some_and(|t| t < started))
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for kind in [
        "consent_given",
        "consent_withdrawn",
        "admin_access",
        "erasure_completed",
    ] {
        assert!(old.contains(&kind), "no old {kind} entry: {old:?}");
    }
    // Bruno's STOP, found by his pseudonymous id (the contact routes show
    // it; a wa_id needs the business, which the audit route has no prefix
    // for yet).
    let key = get(app, &format!("{contacts}/{BRUNO}")).await["contact"].clone();
    let key = key.as_str().expect("contact key");
    let stop = get(
        app,
        &format!("{base}/audit?contact={key}&kind=consent_withdrawn"),
    )
    .await;
    assert_eq!(stop["entries"].as_array().map(Vec::len), Some(1), "{stop}");
}

/// Ana's conversation goes on where the previous release left it: her
/// answer to its last question is read with the city she gave it.
async fn conversation_continues(app: &TestApp, graph: &FakeGraph) {
    let r = app
        .post_signed(&crate::outbox::text_from(
            ANA,
            "wamid.UPGRADE1",
            "38",
            now(),
        ))
        .await;
    assert_eq!(r.status(), 200);
    until("Ana's answer", 30, async || {
        crate::outbox::sent_to(graph, ANA)
            .iter()
            .any(|m| m["text"]["body"] == "Thanks! Size 38, shop Lisbon. See you there.")
    })
    .await;
    assert!(
        graph.sent().iter().all(|s| s.phone_number_id == NUMBER),
        "{:?}",
        graph.sent()
    );
}

/// The previous release's campaign report reads as it was left: sent to
/// Ana and Dora, both read, Bruno and Carla skipped. A campaign record
/// lives 400 days after its creation, so a fixture older than that has
/// none left, by design, and there is nothing to read.
async fn old_campaign_reads(app: &TestApp, base: &str, made_at: u64) {
    const CAMPAIGN_DAYS: u64 = 400;
    let list = get(app, &format!("{base}/campaigns")).await;
    let old = list["campaigns"]
        .as_array()
        .expect("campaigns")
        .iter()
        .find(|c| c["name"] == "Spring sale");
    let Some(old) = old else {
        assert!(
            now() > made_at + (CAMPAIGN_DAYS - 1) * 86_400,
            "the old campaign is gone: {list}"
        );
        return;
    };
    let id = old["id"].as_str().expect("id");
    let report = get(app, &format!("{base}/campaigns/{id}")).await;
    assert_eq!(report["status"], "dispatched", "{report}");
    assert_eq!(report["targeted"], 4, "{report}");
    assert_eq!(report["read"], 2, "{report}");
    assert_eq!(report["skipped"]["opted_out"], 1, "{report}");
    assert_eq!(report["skipped"]["suppressed"], 1, "{report}");
}

/// A campaign to the four old contacts reaches only those who consented:
/// Bruno's STOP and Carla's erasure hold.
async fn campaign_respects_old_choices(app: &TestApp, base: &str, graph: &FakeGraph) {
    let audience = [ANA, BRUNO, CARLA, DORA].map(str::to_owned);
    let mut body = body_for(&audience, 50);
    body["phone_number_id"] = json!(NUMBER);
    let (status, answer) = app.admin_post(&format!("{base}/campaigns"), &body).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["id"].as_str().expect("id").to_owned();
    let report = drained_at(
        app,
        &format!("{base}/campaigns/{id}"),
        std::time::Duration::from_secs(30),
    )
    .await;
    let sent = graph.sent();
    let reached = per_recipient(&campaign_sends(&sent, &id));
    let mut reached: Vec<&str> = reached.keys().map(String::as_str).collect();
    reached.sort_unstable();
    assert_eq!(reached, [ANA, DORA], "{report}");
    assert_eq!(report["skipped"]["opted_out"], 1, "Bruno: {report}");
    assert_eq!(report["skipped"]["suppressed"], 1, "Carla: {report}");
}

/// The previous release's store under today's server, one business.
async fn one_business(backend: &Backend) {
    let started = now();
    let graph = FakeGraph::start().await;
    let app = serve(backend, &graph, &settings()).await;
    let list = get(&app, "/admin/businesses").await;
    let ids: Vec<&str> = list["businesses"]
        .as_array()
        .expect("businesses")
        .iter()
        .filter_map(|b| b["id"].as_str())
        .collect();
    assert_eq!(ids, ["default"], "{list}");
    assert_eq!(list["businesses"][0]["flows"], json!(["club"]), "{list}");
    let made_at = old_contacts_read(&app, "/admin/contacts", started).await;
    old_contacts_read(&app, "/admin/businesses/default/contacts", started).await;
    old_campaign_reads(&app, "/admin", made_at).await;
    old_audit_reads(&app, "/admin/businesses/default/contacts", started).await;
    conversation_continues(&app, &graph).await;
    campaign_respects_old_choices(&app, "/admin", &graph).await;
    app.stop().await;
}

/// The same store with `[[businesses]]`: `default` owns the old number,
/// and a café is beside it; the old contacts are the default business's
/// and nothing of them is the café's.
async fn declared_businesses(backend: &Backend) {
    let started = now();
    let graph = FakeGraph::start().await;
    graph.expect_token(CAFE, "cafe-token-0123456789abcdef");
    let cafe_flows = tempfile::tempdir().expect("temp dir");
    let app = serve(backend, &graph, &two_businesses(cafe_flows.path())).await;
    let list = get(&app, "/admin/businesses").await;
    assert_eq!(list["businesses"][0]["id"], "default", "{list}");
    assert_eq!(list["businesses"][0]["phone_number_ids"], json!([NUMBER]));
    let made_at = old_contacts_read(&app, "/admin/businesses/default/contacts", started).await;
    old_campaign_reads(&app, "/admin/businesses/default", made_at).await;
    for wa in [ANA, BRUNO, DORA, DORA_USER] {
        let (status, doc) = app
            .admin_get(&format!("/admin/businesses/cafe/contacts/{wa}"))
            .await;
        assert_eq!(status, 404, "an old contact is the café's: {doc}");
    }
    let (status, doc) = app.admin_get(&format!("/admin/contacts/{ANA}")).await;
    assert_eq!(status, 409, "{doc}");
    old_audit_reads(&app, "/admin/businesses/default/contacts", started).await;
    conversation_continues(&app, &graph).await;
    campaign_respects_old_choices(&app, "/admin/businesses/default", &graph).await;
    old_contacts_are_the_default_business(&app).await;
    app.stop().await;
}

/// The contacts the old release stored (Ana, Bruno, Dora, and Carla, whose
/// suppression is kept) are given to the `default` business at the first
/// start, so its count shows them and its removal reaches every one.
async fn old_contacts_are_the_default_business(app: &TestApp) {
    until("the old contacts adopted", 30, async || {
        let list = get(app, "/admin/businesses").await;
        list["businesses"][0]["contacts"].as_u64() >= Some(4)
    })
    .await;
    let list = get(app, "/admin/businesses").await;
    assert_eq!(list["businesses"][1]["contacts"], 0, "{list}");
    let (status, removal) = app
        .admin_delete_json("/admin/businesses/default?confirm=default")
        .await;
    assert_eq!(status, 200, "{removal}");
    assert!(
        removal["deleted"]["contacts"].as_u64() >= Some(4),
        "{removal}"
    );
    for wa in [ANA, BRUNO, DORA] {
        let (status, doc) = app
            .admin_get(&format!("/admin/businesses/default/contacts/{wa}"))
            .await;
        assert_eq!(status, 404, "{wa} is left: {doc}");
    }
}

mod embedded {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_business() {
        let (backend, _dir) = super::embedded_copy();
        super::one_business(&backend).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn declared_businesses() {
        let (backend, _dir) = super::embedded_copy();
        super::declared_businesses(&backend).await;
    }
}

mod redis {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_business() {
        let (backend, _redis) = super::redis_copy();
        super::one_business(&backend).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn declared_businesses() {
        let (backend, _redis) = super::redis_copy();
        super::declared_businesses(&backend).await;
    }
}

/// The Redis dump restored on a 3-master Redis Cluster (the previous
/// release's keys carry their hash tags).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster() {
    let cluster = crate::helpers::RedisCluster::start();
    let client = ::redis::cluster::ClusterClient::new(cluster.urls()).expect("cluster");
    let mut con = client.get_connection().expect("cluster connection");
    for (case, prefix) in [("one", "wt-up-one:"), ("two", "wt-up-two:")] {
        restore(&mut con, prefix);
        let backend = Backend::Cluster {
            urls: cluster.redis_url(),
            prefix: prefix.to_owned(),
        };
        if case == "one" {
            one_business(&backend).await;
        } else {
            declared_businesses(&backend).await;
        }
    }
}
