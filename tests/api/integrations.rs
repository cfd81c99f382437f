//! Sharing with CRM and helpdesk receivers (issue 8), through the real
//! path: webhooks in, the flows, the receiver queues, signed POSTs to
//! local receivers that check every delivery with the Standard Webhooks
//! project's own library.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::both_backends;
use crate::graph::FakeGraph;
use crate::helpers::{Backend, TestApp, try_spawn_app_with_file};
use crate::outbox::{now, say_hi, sent_to, tap, text_from, until};

/// What a receiver got: the raw body, whether the signature checked out.
#[derive(Clone, Debug)]
pub struct Got {
    pub id: String,
    pub raw: Vec<u8>,
    pub body: Value,
    pub verified: bool,
}

#[derive(Default)]
struct ReceiverState {
    secret: String,
    got: Vec<Got>,
    /// Answers 503 (recording nothing) until then.
    down_until: Option<Instant>,
    refused: usize,
}

/// A local CRM or helpdesk endpoint.
pub struct Receiver {
    pub url: String,
    pub secret: String,
    state: Arc<Mutex<ReceiverState>>,
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<Mutex<ReceiverState>>>,
) -> HttpResponse {
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    if s.down_until.is_some_and(|t| Instant::now() < t) {
        s.refused += 1;
        return HttpResponse::ServiceUnavailable().finish();
    }
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in req.headers() {
        if let (Ok(n), Ok(v)) = (
            reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()),
            reqwest::header::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.insert(n, v);
        }
    }
    let verified = standardwebhooks::Webhook::new(&s.secret)
        .expect("secret")
        .verify(&body, &headers)
        .is_ok();
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    s.got.push(Got {
        id,
        raw: body.to_vec(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        verified,
    });
    if verified {
        HttpResponse::Ok().finish()
    } else {
        HttpResponse::Unauthorized().finish()
    }
}

impl Receiver {
    pub async fn start(seed: u8) -> Receiver {
        let key: Vec<u8> = (0..32).map(|i| seed.wrapping_add(i)).collect();
        let secret = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(key)
        );
        let state = Arc::new(Mutex::new(ReceiverState {
            secret: secret.clone(),
            ..ReceiverState::default()
        }));
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/hooks", web::post().to(receive))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .expect("bind");
        let port = server.addrs()[0].port();
        tokio::spawn(server.run());
        Receiver {
            url: format!("http://127.0.0.1:{port}/hooks"),
            secret,
            state,
        }
    }

    pub fn got(&self) -> Vec<Got> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .got
            .clone()
    }

    /// The events of one type it got.
    pub fn of(&self, kind: &str) -> Vec<Value> {
        self.got()
            .into_iter()
            .filter(|g| g.body["type"] == kind)
            .map(|g| g.body)
            .collect()
    }

    pub fn down_for(&self, d: Duration) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .down_until = Some(Instant::now() + d);
    }

    pub fn refused(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).refused
    }

    /// Its `[[integrations.webhooks]]` entry.
    pub fn settings(&self, name: &str, events: &[&str], fields: &[&str]) -> String {
        format!(
            "[[integrations.webhooks]]\nname = {name:?}\nurl = {:?}\nsecret = {:?}\nevents = {events:?}\nfields = {fields:?}\n",
            self.url, self.secret
        )
    }
}

pub async fn app_with_receivers(backend: &Backend, graph: &FakeGraph, toml: &str) -> TestApp {
    let env: Vec<(&str, String)> = vec![
        ("WHATSIFY__META__GRAPH_API_BASE", graph.base.clone()),
        ("WHATSIFY__OUTBOX__MARK_READ", "false".into()),
        ("WHATSIFY__OUTBOX__RETRY_BASE", "10ms".into()),
        ("WHATSIFY__OUTBOX__RETRY_CAP", "200ms".into()),
    ];
    try_spawn_app_with_file(backend, &env, toml, 2)
        .await
        .expect("app builds")
}

async fn send(app: &TestApp, wa: &str, wamid: &str, text: &str) {
    let resp = app.post_signed(&text_from(wa, wamid, text, now())).await;
    assert_eq!(resp.status(), 200, "{text}");
}

fn texts(graph: &FakeGraph, wa: &str) -> Vec<String> {
    sent_to(graph, wa)
        .iter()
        .filter_map(|m| m["text"]["body"].as_str().map(str::to_owned))
        .collect()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// A helpdesk that may see the conversation and a CRM that may see only
/// names and consent: each gets its events, signed, with only its fields;
/// a handed-off customer's messages reach the helpdesk, the agent answers,
/// and once the handoff closes the flows answer again.
async fn receivers_get_signed_events_with_only_their_fields(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let desk = Receiver::start(1).await;
    let crm = Receiver::start(77).await;
    let toml = format!(
        "{}{}",
        desk.settings(
            "desk",
            &[
                "contact.created",
                "handoff.requested",
                "message.received",
                "flow.completed"
            ],
            &[
                "phone_number",
                "name",
                "text",
                "conversation",
                "flow",
                "variables"
            ],
        ),
        crm.settings(
            "crm",
            &[
                "contact.created",
                "consent.changed",
                "message.received",
                "privacy.export_requested"
            ],
            &["name", "consent"],
        )
    );
    let app = app_with_receivers(backend, &graph, &toml).await;
    let wa = "16505558101";
    say_hi(&app, wa, "wamid.I1").await;
    send(&app, wa, "wamid.I2", "support").await;
    send(&app, wa, "wamid.I3", "#10482").await;
    send(
        &app,
        wa,
        "wamid.I4",
        "The jacket arrived with a torn sleeve",
    )
    .await;
    until("the handoff event", 30, async || {
        !desk.of("handoff.requested").is_empty()
    })
    .await;
    let handoff = &desk.of("handoff.requested")[0];
    assert_eq!(handoff["data"]["phone_number"], wa, "{handoff}");
    let conversation = handoff["data"]["conversation"].to_string();
    assert!(conversation.contains("torn sleeve"), "{conversation}");
    assert!(conversation.contains("10482"), "{conversation}");
    // The support flow ended with the handoff: what it collected.
    until("the flow's end", 30, async || {
        !desk.of("flow.completed").is_empty()
    })
    .await;
    let done = &desk.of("flow.completed")[0];
    assert_eq!(done["data"]["flow"], "support", "{done}");
    assert_eq!(done["data"]["variables"]["order"], "#10482", "{done}");
    assert_eq!(
        done["data"]["variables"]["problem"],
        "The jacket arrived with a torn sleeve"
    );

    // Handed off: the customer's message goes to the helpdesk.
    send(
        &app,
        wa,
        "wamid.I5",
        "my card number is 4111 1111 1111 1111",
    )
    .await;
    send(&app, wa, "wamid.I6", "STOP").await;
    until("the forwarded message", 30, async || {
        desk.of("message.received")
            .iter()
            .any(|e| e["data"]["text"] == "my card number is 4111 1111 1111 1111")
    })
    .await;
    until("the consent change", 30, async || {
        crm.of("consent.changed")
            .iter()
            .any(|e| e["data"]["consent"]["granted"] == false)
    })
    .await;
    until("the CRM's copy of the message event", 30, async || {
        crm.of("message.received").len() >= 2
    })
    .await;

    // The agent answers; closing the handoff lets the flows answer again.
    let path = format!("/admin/contacts/{wa}/messages");
    let (status, body) = app
        .admin_post(&path, &json!({"text": "Hi, this is Sam from support."}))
        .await;
    assert_eq!(status, 202, "{body}");
    until("the agent's message", 30, async || {
        texts(&graph, wa).iter().any(|t| t.contains("this is Sam"))
    })
    .await;
    let (status, _) = app
        .admin_post(&format!("/admin/contacts/{wa}/handoff/close"), &json!({}))
        .await;
    assert_eq!(status, 202);
    until("closed", 30, async || {
        let (_, shown) = app.admin_get(&format!("/admin/contacts/{wa}")).await;
        shown["profile"]["handed_off_since"].is_null()
    })
    .await;
    let before = sent_to(&graph, wa).len();
    say_hi(&app, wa, "wamid.I7").await;
    until("the flows again", 30, async || {
        sent_to(&graph, wa).len() > before
    })
    .await;
    send(&app, wa, "wamid.I8", "my data").await;
    until("the export request", 30, async || {
        !crm.of("privacy.export_requested").is_empty()
    })
    .await;

    // Every delivery was signed so the standard library accepts it.
    let (all_desk, all_crm) = (desk.got(), crm.got());
    assert!(all_desk.iter().chain(&all_crm).all(|g| g.verified));
    // The CRM never got a number, a message text or the conversation:
    // checked on the raw bytes.
    for g in &all_crm {
        for needle in [
            wa,
            "4111",
            "torn sleeve",
            "jacket",
            "10482",
            "conversation",
            "phone_number",
            "text",
        ] {
            assert!(
                !contains(&g.raw, needle),
                "{needle:?} reached the CRM: {}",
                g.body
            );
        }
    }
    assert!(crm.of("handoff.requested").is_empty(), "not subscribed");
    assert_eq!(crm.of("contact.created").len(), 1);
    assert_eq!(desk.of("contact.created").len(), 1);
    assert_eq!(desk.of("contact.created")[0]["data"]["phone_number"], wa);
    let ids: std::collections::HashSet<&str> = all_desk.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids.len(), all_desk.len(), "each event once");

    // Each delivery is audited: receiver, event, field names; no values.
    let (_, log) = app.admin_get("/admin/audit?kind=data_shared").await;
    let shared: Vec<String> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["kind"] == "data_shared")
        .filter_map(|e| e["detail"].as_str().map(str::to_owned))
        .collect();
    assert!(
        shared
            .iter()
            .any(|d| d == "crm: consent.changed [name, consent]"),
        "{shared:?}"
    );
    assert!(
        shared
            .iter()
            .any(|d| d.starts_with("desk: handoff.requested")),
        "{shared:?}"
    );
    // Forwarded messages are delivered each time but audited once an hour
    // per receiver, so a customer cannot grow the kept log by writing.
    assert!(crm.of("message.received").len() >= 2);
    for receiver in ["desk", "crm"] {
        let lines = shared
            .iter()
            .filter(|d| d.starts_with(&format!("{receiver}: message.received")))
            .count();
        assert_eq!(lines, 1, "{receiver}: {shared:?}");
    }
    assert!(
        // (the card number as sent: "4111" alone can be part of a hash)
        !log.to_string().contains("4111 1111"),
        "a value in the audit log"
    );
    // A consent the support team records reaches the CRM too.
    let (status, _) = app
        .admin_post(
            &format!("/admin/contacts/{wa}/consent"),
            &json!({"purpose": "marketing", "granted": true, "reference": "ticket 4411"}),
        )
        .await;
    assert_eq!(status, 200);
    until("the admin's consent", 30, async || {
        crm.of("consent.changed")
            .iter()
            .any(|e| e["data"]["consent"]["source"] == "admin")
    })
    .await;
    // The customer's copy names who got their data.
    let (status, export) = app.admin_get(&format!("/admin/contacts/{wa}/export")).await;
    assert_eq!(status, 200);
    assert_eq!(export["shared_with"], json!(["crm", "desk"]));
    graph.stop().await;
}
both_backends!(
    fields_and_handoff,
    receivers_get_signed_events_with_only_their_fields
);

/// A receiver that is down for a while gets everything once it is back,
/// each event once, in order for the contact; another receiver is not
/// held up meanwhile.
async fn a_receiver_that_was_down_gets_everything_in_order(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let down = Receiver::start(5).await;
    let up = Receiver::start(9).await;
    let events = ["contact.created", "consent.changed"];
    let toml = format!(
        "{}{}",
        down.settings("crm", &events, &["consent"]),
        up.settings("desk", &events, &["consent"]),
    );
    down.down_for(Duration::from_millis(2500));
    let app = app_with_receivers(backend, &graph, &toml).await;
    let wa = "16505558202";
    // "hi": the privacy notice shown, a ledger entry of its own.
    say_hi(&app, wa, "wamid.R1").await;
    // STOP, START, STOP, START: four consent changes, in this order (a
    // second apart: in one second, a STOP wins and the rest change nothing).
    let t = now() - 10;
    for (i, word) in ["STOP", "START", "STOP", "START"].iter().enumerate() {
        let body = text_from(wa, &format!("wamid.R{}", i + 2), word, t + i as u64);
        assert_eq!(app.post_signed(&body).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until("the receiver that was up", 30, async || {
        up.of("consent.changed").len() == 5
    })
    .await;
    assert!(
        down.got().is_empty(),
        "nothing got through while it was down"
    );
    until("the receiver that was down", 30, async || {
        down.of("consent.changed").len() == 5
    })
    .await;
    assert!(down.refused() > 0, "it was tried while down");
    let order = |r: &Receiver| -> Vec<(Value, Value)> {
        r.of("consent.changed")
            .iter()
            .map(|e| {
                let c = &e["data"]["consent"];
                (c["purpose"].clone(), c["granted"].clone())
            })
            .collect()
    };
    let marketing = |granted: bool| (json!("marketing"), json!(granted));
    assert_eq!(
        order(&down),
        [
            (json!("policy_notice"), json!(true)),
            marketing(false),
            marketing(true),
            marketing(false),
            marketing(true)
        ]
    );
    assert_eq!(order(&up), order(&down));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = down.got();
    assert_eq!(got.len(), 6, "each event once: {got:?}");
    assert_eq!(got[0].body["type"], "contact.created");
    // Operators see it in the metrics (the registry is the process's:
    // other tests add to it).
    let metrics = crate::metrics::scrape(&app).await;
    let count = |result: &str| -> f64 {
        let label = format!(
            "whatsify_integration_deliveries_total{{receiver=\"crm\",result=\"{result}\"}} "
        );
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(label.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    assert!(count("retry") >= 1.0, "{metrics}");
    assert!(count("delivered") >= 5.0, "{metrics}");
    graph.stop().await;
}
both_backends!(
    receiver_down,
    a_receiver_that_was_down_gets_everything_in_order
);

/// A correction and an erasure reach every receiver that got data about
/// the contact, even one that did not ask for those events (GDPR Art.
/// 19); one that got nothing hears nothing. Both the customer's DELETE MY
/// DATA and the support team's erasure do.
async fn an_erasure_reaches_everyone_who_got_data(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let crm = Receiver::start(11).await;
    let other = Receiver::start(13).await;
    let toml = format!(
        "{}{}",
        crm.settings("crm", &["contact.created"], &["phone_number"]),
        other.settings("ads", &["handoff.requested"], &[]),
    );
    let app = app_with_receivers(backend, &graph, &toml).await;
    let wa = "16505558303";
    say_hi(&app, wa, "wamid.E1").await;
    until("created", 30, async || {
        !crm.of("contact.created").is_empty()
    })
    .await;
    // Events are queued just before the step commits: the welcome (sent
    // after the commit) says the contact is on record.
    until("the welcome", 30, async || !sent_to(&graph, wa).is_empty()).await;
    let status = app.admin_delete(&format!("/admin/contacts/{wa}")).await;
    assert_eq!(status, 200);
    until("the erasure notice", 30, async || {
        !crm.of("contact.erased").is_empty()
    })
    .await;
    let erased = &crm.of("contact.erased")[0];
    assert_eq!(
        erased["data"]["phone_number"], wa,
        "so the CRM can find them"
    );

    // The customer corrects their name, then asks to be erased.
    let ana = "16505558304";
    say_hi(&app, ana, "wamid.E2").await;
    until("created", 30, async || crm.of("contact.created").len() == 2).await;
    send(&app, ana, "wamid.E3", "privacy").await;
    let pick = tap(ana, "wamid.E4", "privacy_name", "Change my name");
    assert_eq!(app.post_signed(&pick).await.status(), 200);
    send(&app, ana, "wamid.E5", "Ana María").await;
    until("the correction notice", 30, async || {
        !crm.of("contact.rectified").is_empty()
    })
    .await;
    let fixed = &crm.of("contact.rectified")[0];
    assert_eq!(fixed["data"]["phone_number"], ana, "{fixed}");
    assert!(
        fixed["data"].get("changed").is_none(),
        "not a field it may have"
    );
    send(&app, ana, "wamid.E6", "delete my data").await;
    until("the question", 30, async || {
        sent_to(&graph, ana).iter().any(|m| {
            m["interactive"]["body"]["text"]
                .as_str()
                .is_some_and(|b| b.contains("Delete everything?"))
        })
    })
    .await;
    let yes = tap(ana, "wamid.E7", "whatsify_erase_yes", "Yes, delete it");
    assert_eq!(app.post_signed(&yes).await.status(), 200);
    until("the second erasure notice", 30, async || {
        crm.of("contact.erased").len() == 2
    })
    .await;
    assert_eq!(crm.of("contact.erased")[1]["data"]["phone_number"], ana);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(other.got().is_empty(), "{:?}", other.got());
    assert!(crm.got().iter().all(|g| g.verified));
    graph.stop().await;
}
both_backends!(erasure_notice, an_erasure_reaches_everyone_who_got_data);

/// A receiver that stays down: its events are retried for 24 hours, then
/// listed as dead letters in the admin API (by receiver, event and the
/// contact's pseudonymous id); the customer's replies never waited.
async fn an_event_undelivered_for_a_day_is_a_dead_letter(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let crm = Receiver::start(21).await;
    crm.down_for(Duration::from_secs(3600));
    let toml = crm.settings("crm", &["contact.created"], &["name"]);
    let app = app_with_receivers(backend, &graph, &toml).await;
    let wa = "16505558404";
    say_hi(&app, wa, "wamid.D1").await;
    until("the welcome", 30, async || !sent_to(&graph, wa).is_empty()).await;
    until("tried", 30, async || crm.refused() >= 2).await;
    app.clock.advance(25 * 3600);
    let mut letters = Value::Null;
    until("the dead letter", 30, async || {
        let (_, body) = app.admin_get("/admin/outbox/dead-letters").await;
        letters = body;
        letters.to_string().contains("\"receiver\":\"crm\"")
    })
    .await;
    let key = crate::outbox::contact_key(&app, wa);
    let letter = letters["dead_letters"]
        .as_array()
        .or(letters.as_array())
        .and_then(|l| l.iter().find(|d| d["receiver"] == "crm").cloned())
        .unwrap_or_else(|| panic!("{letters}"));
    assert_eq!(letter["event"], "contact.created", "{letter}");
    assert_eq!(letter["contact"], key.as_str(), "{letter}");
    assert!(
        letter["reason"]
            .as_str()
            .is_some_and(|r| r.contains("24 hours")),
        "{letter}"
    );
    assert!(!letters.to_string().contains(wa), "no number in the list");
    assert!(crm.got().is_empty());
    graph.stop().await;
}
both_backends!(dead_letter, an_event_undelivered_for_a_day_is_a_dead_letter);
