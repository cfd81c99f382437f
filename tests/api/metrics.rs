//! `GET /metrics`: Prometheus text, counting what a conversation, an
//! opt-out, a refused signature and a failing send did, with no label that
//! holds a phone number, a name or message text.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::conversation::delivery;
use crate::graph::FakeGraph;
use crate::helpers::{Backend, TestApp, spawn_app_running};

/// One sample of a scrape: (metric name, labels, value).
type Sample = (String, Vec<(String, String)>, f64);

/// Every sample of a scrape.
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (head, value) = l.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match head.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (head, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|p| !p.is_empty())
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((k.to_owned(), v.trim_matches('"').to_owned()))
                })
                .collect();
            Some((name.to_owned(), labels, value))
        })
        .collect()
}

/// Scrapes `/metrics` with the admin credential (it is refused without).
pub async fn scrape(app: &TestApp) -> String {
    assert_eq!(app.get("/metrics").await.status(), 401, "no credential");
    let resp = app
        .client
        .get(format!("{}/metrics", app.address))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .send()
        .await
        .expect("scrape");
    assert_eq!(resp.status(), 200);
    let kind = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(kind.starts_with("text/plain"), "{kind}");
    resp.text().await.expect("text")
}

/// The value of one sample, 0 when it is not there.
fn value(all: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    all.iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| *v)
        .sum()
}

async fn metrics_count_what_happened_and_name_no_one(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = spawn_app_running(
        backend,
        &[("WHATSIFY__META__GRAPH_API_BASE", graph.base.clone())],
        2,
    )
    .await;
    let before = samples(&scrape(&app).await);
    let people = [
        ("447788123401", "Zebedee Quux"),
        ("447788123402", "Xanthippe Vole"),
    ];
    let secret = "my quokkaberry voucher is 8675309 at Flat 9";
    for (i, (wa, name)) in people.iter().enumerate() {
        let text = json!({"type": "text", "text": {"body": if i == 0 { secret } else { "STOP" }}});
        assert_eq!(
            app.post_signed(&delivery(wa, name, &format!("wamid.M{i}"), text))
                .await
                .status(),
            200
        );
    }
    // A refused signature.
    let refused = app
        .post_raw(b"{}".to_vec(), Some(format!("sha256={}", "00".repeat(32))))
        .await;
    assert_eq!(refused.status(), 401);
    let deadline = Instant::now() + Duration::from_secs(30);
    while graph.sent().len() < 3 {
        assert!(Instant::now() < deadline, "the answers");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // A message Meta refuses for good, and a refused token (the number's
    // breaker opens).
    graph.fail_next(&[(400, 131026)]);
    let hi = json!({"type": "text", "text": {"body": "hi"}});
    app.post_signed(&delivery(people[0].0, people[0].1, "wamid.M9", hi.clone()))
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = samples(&scrape(&app).await);
        let failed = value(
            &now,
            "whatsify_sends_total",
            &[("result", "failed"), ("code", "131026")],
        ) - value(
            &before,
            "whatsify_sends_total",
            &[("result", "failed"), ("code", "131026")],
        );
        if failed >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the failed send is counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    graph.fail_all(Some((401, 190)));
    app.post_signed(&delivery(people[1].0, people[1].1, "wamid.M10", hi))
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = scrape(&app).await;
        if text.contains("whatsify_breaker_open{phone_number_id=\"106540352242922\"} 1") {
            break text;
        }
        assert!(Instant::now() < deadline, "the breaker shows: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    graph.fail_all(None);
    let now = samples(&text);
    let grew = |name: &str, labels: &[(&str, &str)]| {
        value(&now, name, labels) - value(&before, name, labels)
    };
    assert!(grew("whatsify_webhook_requests_total", &[("outcome", "ok")]) >= 4.0);
    assert!(
        grew(
            "whatsify_webhook_requests_total",
            &[("outcome", "signature_mismatch")]
        ) >= 1.0
    );
    assert!(grew("whatsify_webhook_ack_seconds_count", &[]) >= 5.0);
    // The per-message metrics name the business (the one `default` here).
    let default = ("business", "default");
    assert!(grew("whatsify_sends_total", &[default, ("result", "accepted")]) >= 3.0);
    assert!(grew("whatsify_flow_steps_total", &[default, ("flow", "welcome")]) >= 1.0);
    assert!(grew("whatsify_events_total", &[default, ("event", "opt_outs")]) >= 1.0);
    assert!(
        grew(
            "whatsify_events_total",
            &[default, ("event", "messages_in")]
        ) >= 3.0
    );
    assert!(
        now.iter()
            .any(|(n, l, _)| n == "whatsify_pending_contacts"
                && l.iter().any(|(_, v)| v == "outbox"))
    );
    // No label holds anything about the people.
    let forbidden: Vec<String> = people
        .iter()
        .flat_map(|(wa, name)| {
            [
                wa.to_string(),
                wa[2..].to_string(),
                name.to_string(),
                name.split(' ').next().unwrap_or("").to_string(),
            ]
        })
        // (Not common words: the registry is the whole process's, and the
        // shipped flows' step ids, such as `ask_order`, are fine labels.)
        .chain([
            "8675309".to_string(),
            "Flat 9".to_string(),
            "quokkaberry".to_string(),
            "voucher".to_string(),
        ])
        .collect();
    for (name, labels, _) in &now {
        for (k, v) in labels {
            for f in &forbidden {
                assert!(!v.contains(f.as_str()), "{name} label {k}={v} holds {f}");
            }
        }
    }
    app.stop().await;
}
crate::both_backends!(
    metrics_count_what_happened_and_name_no_one_,
    metrics_count_what_happened_and_name_no_one
);
