//! Campaign benchmark (see `scripts/bench-campaign`): a campaign of N
//! contacts is accepted and queued quickly, drains at its configured rate,
//! and conversational replies keep their latency while it drains.
//!
//! ```text
//! cargo run --release --example campaign_bench -- --contacts 10000 --rate 500 --fake-graph 18099
//! ```
//!
//! Steps (against a running server whose Graph API base is this program's
//! fake on `--fake-graph PORT`, loopback only):
//!
//! 1. setup, not measured: N contacts get marketing consent through
//!    `POST /admin/contacts/{wa_id}/consent` (`--consent-concurrency` in
//!    flight);
//! 2. reply latency at rest: signed "hi" webhooks from other, new contacts
//!    at `--reply-rate` for `--reply-seconds`; end to end is from the start
//!    of the POST to the arrival at the fake of the first reply to that
//!    contact (the read receipt names the inbound message and precedes its
//!    replies; needs `outbox.mark_read`, the default);
//! 3. `POST /admin/campaigns` with the N wa_ids: time until 202, then until
//!    the report's `waiting` first drops (dispatch started);
//! 4. the same reply load while the campaign drains;
//! 5. the drain rate, from the fake's arrival times of campaign messages
//!    (`biz_opaque_callback_data` = `cmp.…`);
//! 6. a summary.
//!
//! The app secret comes from `--secret` or `WHATSIFY__META__APP_SECRET`,
//! the admin token from `--token` or `WHATSIFY__ADMIN__TOKEN`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use whatsify::crypto::signature::sign;

/// Campaign audience: 4475xxxxxxxx (never a reply-load contact).
const AUDIENCE_BASE: u64 = 447_500_000_000;
/// Reply-load contacts: one new contact per message.
const REPLY_BASE: u64 = 16_505_000_000;

struct Args {
    base: String,
    secret: String,
    token: String,
    contacts: usize,
    rate: u32,
    messages_per_second: Option<u32>,
    reply_rate: f64,
    reply_seconds: f64,
    consent_concurrency: usize,
    fake_graph: u16,
    /// Seconds after dispatch started before the reply load under drain.
    settle: f64,
}

fn parse_args() -> Args {
    let mut args = Args {
        base: "http://127.0.0.1:18080".into(),
        secret: std::env::var("WHATSIFY__META__APP_SECRET").unwrap_or_default(),
        token: std::env::var("WHATSIFY__ADMIN__TOKEN").unwrap_or_default(),
        contacts: 10_000,
        rate: 500,
        messages_per_second: std::env::var("WHATSIFY__OUTBOX__MESSAGES_PER_SECOND")
            .ok()
            .and_then(|v| v.parse().ok()),
        reply_rate: 50.0,
        reply_seconds: 10.0,
        consent_concurrency: 64,
        fake_graph: 18_099,
        settle: 1.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--base" => args.base = value,
            "--secret" => args.secret = value,
            "--token" => args.token = value,
            "--contacts" => args.contacts = value.parse().expect("--contacts N"),
            "--rate" => args.rate = value.parse().expect("--rate per second"),
            "--messages-per-second" => {
                args.messages_per_second = Some(value.parse().expect("--messages-per-second N"))
            }
            "--reply-rate" => args.reply_rate = value.parse().expect("--reply-rate per second"),
            "--reply-seconds" => args.reply_seconds = value.parse().expect("--reply-seconds S"),
            "--consent-concurrency" => {
                args.consent_concurrency = value.parse().expect("--consent-concurrency N")
            }
            "--fake-graph" => args.fake_graph = value.parse().expect("--fake-graph PORT"),
            "--settle" => args.settle = value.parse().expect("--settle S"),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        !args.secret.is_empty(),
        "set --secret or WHATSIFY__META__APP_SECRET"
    );
    assert!(
        !args.token.is_empty(),
        "set --token or WHATSIFY__ADMIN__TOKEN"
    );
    assert!(args.reply_rate > 0.0, "--reply-rate must be positive");
    args
}

/// A signed-ready delivery: the text "hi" from reply-load contact `i`.
fn hi(run: u64, i: usize) -> Vec<u8> {
    let wa_id = REPLY_BASE + i as u64;
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"240017555501234","changes":[{{"value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550001111","phone_number_id":"106540352242922"}},"contacts":[{{"profile":{{"name":"Bench {i}"}},"wa_id":"{wa_id}"}}],"messages":[{{"from":"{wa_id}","id":"wamid.CMPBENCH{run:x}x{i:010}AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","timestamp":"{now}","type":"text","text":{{"body":"hi"}}}}]}},"field":"messages"}}]}}]}}"#,
        now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
    .into_bytes()
}

/// The `p` quantile of sorted µs values, in ms.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

/// What the fake Graph API saw.
#[derive(Default)]
struct Graph {
    requests: AtomicU64,
    read_receipts: AtomicU64,
    /// Replies (neither read receipts nor campaign messages).
    replies: AtomicU64,
    /// Arrival (since the origin) of each campaign message.
    campaign: Mutex<Vec<Duration>>,
    /// Campaign messages whose body was not a template.
    campaign_not_template: AtomicU64,
    /// When reply-load message N's POST started.
    posted: Mutex<HashMap<usize, Instant>>,
    /// Per recipient wa_id: (message N, its POST start), once its read
    /// receipt came and until its first reply does.
    pending: Mutex<HashMap<String, (usize, Instant)>>,
    /// End-to-end latencies (message N, µs).
    e2e: Mutex<Vec<(usize, u64)>>,
}

impl Graph {
    fn observe(&self, body: &Value, origin: Instant) {
        if body["status"] == "read" {
            self.read_receipts.fetch_add(1, Ordering::Relaxed);
            // wamid.CMPBENCH{run}x{i:010}AAAA…
            let i = body["message_id"]
                .as_str()
                .and_then(|m| m.strip_prefix("wamid.CMPBENCH"))
                .and_then(|m| m.split('x').nth(1))
                .and_then(|rest| rest.get(..10))
                .and_then(|d| d.parse::<usize>().ok());
            let Some(i) = i else { return };
            let to = (REPLY_BASE + i as u64).to_string();
            let posted = self.posted.lock().ok().and_then(|p| p.get(&i).copied());
            if let (Some(t), Ok(mut pending)) = (posted, self.pending.lock()) {
                pending.insert(to, (i, t));
            }
            return;
        }
        let is_campaign = body["biz_opaque_callback_data"]
            .as_str()
            .is_some_and(|d| d.starts_with("cmp."));
        if is_campaign {
            if body["type"] != "template" {
                self.campaign_not_template.fetch_add(1, Ordering::Relaxed);
            }
            if let Ok(mut c) = self.campaign.lock() {
                c.push(origin.elapsed());
            }
            return;
        }
        self.replies.fetch_add(1, Ordering::Relaxed);
        let Some(to) = body["to"].as_str() else {
            return;
        };
        let to = to.trim_start_matches('+');
        let hit = self.pending.lock().ok().and_then(|mut p| p.remove(to));
        if let (Some((i, t)), Ok(mut e2e)) = (hit, self.e2e.lock()) {
            e2e.push((i, t.elapsed().as_micros() as u64));
        }
    }

    fn campaign_count(&self) -> usize {
        self.campaign.lock().map(|c| c.len()).unwrap_or(0)
    }
}

async fn fake_graph(port: u16, graph: Arc<Graph>, origin: Instant) {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let data = web::Data::new((graph, origin));
    let server = HttpServer::new(move || {
        App::new().app_data(data.clone()).route(
            "/{v}/{id}/messages",
            web::post().to(
                |d: web::Data<(Arc<Graph>, Instant)>, body: web::Bytes| async move {
                    let n = d.0.requests.fetch_add(1, Ordering::Relaxed);
                    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                        d.0.observe(&v, d.1);
                    }
                    HttpResponse::Ok().json(json!({
                        "messaging_product": "whatsapp",
                        "contacts": [{"input": "+16505550000", "wa_id": "16505550000"}],
                        "messages": [{"id": format!("wamid.CMPFAKE{n}")}]
                    }))
                },
            ),
        )
    })
    .workers(1)
    .bind(("127.0.0.1", port))
    .expect("fake graph port");
    tokio::spawn(server.run());
}

/// Step 1: marketing consent for the audience, `concurrency` in flight.
async fn grant_consent(args: &Arc<Args>, client: &reqwest::Client) {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.consent_concurrency {
        let (args, client, next) = (args.clone(), client.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut statuses = BTreeMap::<u16, usize>::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= args.contacts {
                    break;
                }
                let url = format!(
                    "{}/admin/contacts/{}/consent",
                    args.base,
                    AUDIENCE_BASE + i as u64
                );
                let status = match client
                    .post(&url)
                    .bearer_auth(&args.token)
                    .json(&json!({"purpose": "marketing", "granted": true, "reference": "bench"}))
                    .send()
                    .await
                {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                *statuses.entry(status).or_default() += 1;
            }
            statuses
        }));
    }
    let mut statuses = BTreeMap::<u16, usize>::new();
    for w in workers {
        for (k, v) in w.await.expect("consent worker") {
            *statuses.entry(k).or_default() += v;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "setup: marketing consent for {} contacts in {elapsed:.1}s ({:.0}/s, {} in flight); statuses {statuses:?}",
        args.contacts,
        args.contacts as f64 / elapsed,
        args.consent_concurrency
    );
    let ok = statuses.get(&200).copied().unwrap_or(0);
    assert_eq!(
        ok, args.contacts,
        "every consent must be recorded (0 = connection error)"
    );
}

/// Latencies of one reply-load phase.
struct Phase {
    ack: Vec<u64>,
    e2e: Vec<u64>,
    sent: usize,
    statuses: BTreeMap<u16, usize>,
    /// From the first POST to the last.
    span: (Duration, Duration),
}

/// Steps 2 and 4: `reply_rate` "hi" webhooks for `reply_seconds` from new
/// contacts `first..`, then waits (up to 10 s) for their first replies.
async fn reply_load(
    args: &Arc<Args>,
    client: &reqwest::Client,
    graph: &Arc<Graph>,
    run: u64,
    first: usize,
    origin: Instant,
) -> Phase {
    let n = (args.reply_rate * args.reply_seconds).round() as usize;
    let url = format!("{}/webhook", args.base);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for k in 0..n {
        let due = start + Duration::from_secs_f64(k as f64 / args.reply_rate);
        tokio::time::sleep_until(due.into()).await;
        let i = first + k;
        let b = hi(run, i);
        let sig = sign(&args.secret, &b);
        let (client, graph, url) = (client.clone(), graph.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            if let Ok(mut p) = graph.posted.lock() {
                p.insert(i, t);
            }
            let status = match client
                .post(&url)
                .header("Content-Type", "application/json")
                .header("X-Hub-Signature-256", sig)
                .body(b)
                .send()
                .await
            {
                Ok(r) => {
                    let s = r.status().as_u16();
                    let _ = r.bytes().await;
                    s
                }
                Err(_) => 0,
            };
            (status, t.elapsed().as_micros() as u64)
        }));
    }
    let span = (start - origin, origin.elapsed());
    let mut ack = Vec::with_capacity(n);
    let mut statuses = BTreeMap::<u16, usize>::new();
    for t in tasks {
        let (status, us) = t.await.expect("reply task");
        *statuses.entry(status).or_default() += 1;
        ack.push(us);
    }
    let range = first..first + n;
    let collect = || -> Vec<u64> {
        graph
            .e2e
            .lock()
            .map(|e| {
                e.iter()
                    .filter(|(i, _)| range.contains(i))
                    .map(|(_, us)| *us)
                    .collect()
            })
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while collect().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut e2e = collect();
    e2e.sort_unstable();
    ack.sort_unstable();
    Phase {
        ack,
        e2e,
        sent: n,
        statuses,
        span,
    }
}

fn print_phase(label: &str, p: &Phase) {
    println!(
        "{label}: {} \"hi\" webhooks over {:.1}s..{:.1}s, statuses {:?}; ack p50 {:.2} p99 {:.2} ms; \
         end to end ({} of {} matched) p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2} ms",
        p.sent,
        p.span.0.as_secs_f64(),
        p.span.1.as_secs_f64(),
        p.statuses,
        percentile(&p.ack, 0.50),
        percentile(&p.ack, 0.99),
        p.e2e.len(),
        p.sent,
        percentile(&p.e2e, 0.50),
        percentile(&p.e2e, 0.90),
        percentile(&p.e2e, 0.99),
        percentile(&p.e2e, 1.0),
    );
}

async fn report(args: &Args, client: &reqwest::Client, id: &str) -> Option<Value> {
    let r = client
        .get(format!("{}/admin/campaigns/{id}", args.base))
        .bearer_auth(&args.token)
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// Campaign messages per second over `[from, to)` of the sorted arrivals.
fn rate_between(arrivals: &[Duration], from: Duration, to: Duration) -> (usize, f64) {
    let n = arrivals.iter().filter(|t| **t >= from && **t < to).count();
    let secs = (to.saturating_sub(from)).as_secs_f64();
    (n, if secs > 0.0 { n as f64 / secs } else { 0.0 })
}

#[tokio::main]
async fn main() {
    let args = Arc::new(parse_args());
    let origin = Instant::now();
    let graph = Arc::new(Graph::default());
    fake_graph(args.fake_graph, graph.clone(), origin).await;
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.consent_concurrency.max(64))
        .build()
        .expect("client");
    println!(
        "campaign of {} contacts at {}/s (outbox.messages_per_second {}); replies {}/s for {}s",
        args.contacts,
        args.rate,
        args.messages_per_second
            .map_or("unknown".to_owned(), |m| m.to_string()),
        args.reply_rate,
        args.reply_seconds
    );

    // 1. Setup.
    grant_consent(&args, &client).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 2. Replies at rest.
    let per_phase = (args.reply_rate * args.reply_seconds).round() as usize;
    let at_rest = reply_load(&args, &client, &graph, run, 0, origin).await;
    print_phase("replies at rest", &at_rest);
    let stray = graph.campaign_count();
    assert_eq!(stray, 0, "campaign messages before the campaign");

    // 3. The campaign.
    let wa_ids: Vec<String> = (0..args.contacts)
        .map(|i| (AUDIENCE_BASE + i as u64).to_string())
        .collect();
    let body = serde_json::to_vec(&json!({
        "name": "Bench",
        "template": {"name": "bench_sale", "language": {"code": "en_US"}},
        "audience": {"wa_ids": wa_ids},
        "opt_out": {"button": 0},
        "rate_per_second": args.rate,
    }))
    .expect("campaign body");
    let body_len = body.len();
    let posted_at = Instant::now();
    let answer = client
        .post(format!("{}/admin/campaigns", args.base))
        .bearer_auth(&args.token)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .expect("POST /admin/campaigns");
    let status = answer.status().as_u16();
    let created: Value = answer.json().await.expect("campaign answer");
    let accepted = posted_at.elapsed();
    assert_eq!(status, 202, "campaign not accepted: {created}");
    let id = created["id"].as_str().expect("campaign id").to_owned();
    println!(
        "campaign {id}: 202 in {:.1} ms ({} KB body), targeted {}",
        accepted.as_secs_f64() * 1000.0,
        body_len / 1024,
        created["targeted"]
    );
    // Until the report's `waiting` first drops.
    let targeted = created["targeted"].as_u64().unwrap_or(0);
    let mut polls = 0;
    let dispatch_started = loop {
        polls += 1;
        if let Some(r) = report(&args, &client, &id).await
            && r["waiting"].as_u64().is_some_and(|w| w < targeted)
        {
            break posted_at.elapsed();
        }
        if posted_at.elapsed() > Duration::from_secs(30) {
            panic!("the campaign did not start dispatching within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!(
        "dispatch started ('waiting' dropped) {:.1} ms after the POST ({polls} polls)",
        dispatch_started.as_secs_f64() * 1000.0
    );

    // 4. Replies while the campaign drains.
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let before = graph.campaign_count();
    let during = reply_load(&args, &client, &graph, run, per_phase, origin).await;
    let after = graph.campaign_count();
    print_phase("replies during the drain", &during);
    println!(
        "  campaign messages at the fake: {before} when that load started, {after} when its replies were in"
    );
    if after >= args.contacts {
        println!(
            "  WARNING: the campaign had fully drained before the reply load ended: raise --contacts or lower --rate"
        );
    }

    // 5. Until the campaign drains (no new campaign message for 5 s).
    let mut last = usize::MAX;
    loop {
        let n = graph.campaign_count();
        if n >= args.contacts || n == last {
            break;
        }
        last = n;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut arrivals = graph.campaign.lock().map(|c| c.clone()).unwrap_or_default();
    arrivals.sort_unstable();
    let final_report = report(&args, &client, &id).await.unwrap_or(Value::Null);
    println!(
        "final report: status {} targeted {} waiting {} queued {} sent {} skipped {} failed {} cancelled {}",
        final_report["status"],
        final_report["targeted"],
        final_report["waiting"],
        final_report["queued"],
        final_report["sent"],
        final_report["skipped"],
        final_report["failed"],
        final_report["cancelled"]
    );
    println!(
        "fake Graph API: {} requests: {} campaign messages ({} not of type template), {} replies, {} read receipts",
        graph.requests.load(Ordering::Relaxed),
        arrivals.len(),
        graph.campaign_not_template.load(Ordering::Relaxed),
        graph.replies.load(Ordering::Relaxed),
        graph.read_receipts.load(Ordering::Relaxed),
    );
    let (Some(first), Some(last)) = (arrivals.first().copied(), arrivals.last().copied()) else {
        println!("no campaign message arrived");
        return;
    };
    let posted = posted_at - origin;
    let whole = arrivals.len() as f64 / (last - first).as_secs_f64().max(0.001);
    // The steady middle: from the 10th to the 90th percentile of arrivals.
    let lo = arrivals[arrivals.len() / 10];
    let hi = arrivals[arrivals.len() * 9 / 10];
    let steady =
        (arrivals.len() * 9 / 10 - arrivals.len() / 10) as f64 / (hi - lo).as_secs_f64().max(0.001);
    let (during_n, during_rate) = rate_between(&arrivals, during.span.0, during.span.1);
    println!(
        "drain: first campaign message {:.0} ms after the POST, last {:.2} s after; {:.1}/s over the whole, {:.1}/s over the middle 80% (configured {}/s); {:.1}/s while the replies ran ({during_n} messages)",
        (first.saturating_sub(posted)).as_secs_f64() * 1000.0,
        (last.saturating_sub(posted)).as_secs_f64(),
        whole,
        steady,
        args.rate,
        during_rate,
    );
    // Per-second arrivals, from the first.
    let mut buckets = BTreeMap::<u64, usize>::new();
    for t in &arrivals {
        *buckets.entry((*t - first).as_secs()).or_default() += 1;
    }
    println!(
        "  per second: {}",
        buckets
            .values()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );

    // 6. Summary.
    let p99_rest = percentile(&at_rest.e2e, 0.99);
    let p99_drain = percentile(&during.e2e, 0.99);
    let ratio = p99_drain / p99_rest;
    println!();
    println!("SUMMARY");
    println!(
        "  accepted (202) in {:.1} ms  [target < 1000 ms: {}]",
        accepted.as_secs_f64() * 1000.0,
        if accepted < Duration::from_secs(1) {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "  dispatch started after {:.1} ms",
        dispatch_started.as_secs_f64() * 1000.0
    );
    println!(
        "  drain {:.1}/s (middle 80%), {:.1}/s (whole) vs configured {}/s: {:.1}% of it",
        steady,
        whole,
        args.rate,
        steady / f64::from(args.rate) * 100.0
    );
    println!(
        "  reply p50/p99 at rest {:.2}/{:.2} ms; during drain {:.2}/{:.2} ms; p99 ratio {:.2}  [target <= 2: {}]",
        percentile(&at_rest.e2e, 0.50),
        p99_rest,
        percentile(&during.e2e, 0.50),
        p99_drain,
        ratio,
        if ratio <= 2.0 { "met" } else { "MISSED" }
    );
}
