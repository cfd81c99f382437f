//! Load generator for the webhook: posts N signed, unique deliveries (about
//! 1 KB each, like a typical text message) at a given concurrency, or at a
//! fixed rate, and prints throughput and acknowledgement latency.
//!
//! ```text
//! cargo run --release --example loadgen -- --requests 50000 --concurrency 64
//! cargo run --release --example loadgen -- --requests 10000 --rate 1000
//! ```
//! The app secret comes from `--secret` or `WHATSIFY__META__APP_SECRET`.
//!
//! With `--fake-graph PORT` it also serves a fake Graph API on that
//! loopback port (answering like Meta's messages endpoint) and reports how
//! many replies the server sent and how fast; start the server with
//! `WHATSIFY__META__GRAPH_API_BASE=http://127.0.0.1:PORT/v23.0`. It then
//! also measures the end-to-end latency: from the start of the webhook POST
//! of message N to the arrival at the fake of the first reply to it (the
//! read receipt names message N; the next message to that contact is its
//! first reply; needs `outbox.mark_read`, the default).
//!
//! With `--reply-text TEXT` (for a bot that answers every message with one
//! text, read receipts off) the replies are the text messages whose body is
//! TEXT (others, such as a first-contact notice, are counted apart), and the
//! end-to-end latency of message N is from the start of its POST to the
//! arrival of the reply it matches, first in first out per contact.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use whatsify::crypto::signature::sign;

struct Args {
    url: String,
    secret: String,
    requests: usize,
    concurrency: usize,
    rate: Option<f64>,
    contacts: usize,
    fake_graph: Option<u16>,
    reply_text: Option<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        url: "http://127.0.0.1:8080/webhook".into(),
        secret: std::env::var("WHATSIFY__META__APP_SECRET").unwrap_or_default(),
        requests: 20_000,
        concurrency: 64,
        rate: None,
        contacts: 1_000,
        fake_graph: None,
        reply_text: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = value,
            "--secret" => args.secret = value,
            "--requests" => args.requests = value.parse().expect("--requests N"),
            "--concurrency" => args.concurrency = value.parse().expect("--concurrency N"),
            "--rate" => args.rate = Some(value.parse().expect("--rate per second")),
            "--contacts" => args.contacts = value.parse().expect("--contacts N"),
            "--fake-graph" => args.fake_graph = Some(value.parse().expect("--fake-graph PORT")),
            "--reply-text" => args.reply_text = Some(value),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        !args.secret.is_empty(),
        "set --secret or WHATSIFY__META__APP_SECRET"
    );
    args
}

/// The sender of message `i`.
fn wa_id(i: usize, contacts: usize) -> u64 {
    16_505_000_000u64 + (i % contacts) as u64
}

/// A ~1 KB delivery with one text message; `run` keeps ids unique per run.
fn body(run: u64, i: usize, contacts: usize) -> Vec<u8> {
    let wa_id = wa_id(i, contacts);
    let text = "Hello! I ordered the blue jacket last week and wanted to ask whether it can still be \
                exchanged for a larger size, and if so how I should send it back. Thanks a lot for \
                your help, the customer service has been great so far.";
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"240017555501234","changes":[{{"value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550001111","phone_number_id":"106540352242922"}},"contacts":[{{"profile":{{"name":"Load Test {n}"}},"wa_id":"{wa_id}"}}],"messages":[{{"from":"{wa_id}","id":"wamid.LOADGEN{run:x}x{i:010}AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","timestamp":"{now}","type":"text","text":{{"body":"{text} (#{i})"}}}}]}},"field":"messages"}}]}}]}}"#,
        n = i % contacts,
        now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
    .into_bytes()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

/// Replies received by the fake Graph API, and when the last one came.
#[derive(Default)]
struct Replies {
    /// Every request (replies and read receipts).
    count: std::sync::atomic::AtomicU64,
    /// Messages, read receipts not counted.
    messages: std::sync::atomic::AtomicU64,
    last_ms: std::sync::atomic::AtomicU64,
    /// When message N's POST started.
    posted: std::sync::Mutex<std::collections::HashMap<usize, Instant>>,
    /// Per recipient ("+wa_id"): the POST time of the message whose read
    /// receipt came and whose first reply has not yet.
    pending: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
    /// End-to-end latencies (µs).
    e2e: std::sync::Mutex<Vec<u64>>,
    contacts: std::sync::atomic::AtomicUsize,
    /// With `--reply-text`: the reply text, ...
    reply_text: Option<String>,
    /// ... the replies received and when the last one came, ...
    replies: std::sync::atomic::AtomicU64,
    last_reply_ms: std::sync::atomic::AtomicU64,
    /// ... and per contact (wa_id without "+"), the POST times of the
    /// messages not yet answered, oldest first.
    unanswered:
        std::sync::Mutex<std::collections::HashMap<u64, std::collections::VecDeque<Instant>>>,
}

impl Replies {
    fn observe(&self, body: &serde_json::Value) {
        if body["status"] == "read" {
            // wamid.LOADGEN{run}x{i:010}AAAA…
            let i = body["message_id"]
                .as_str()
                .and_then(|m| m.split('x').nth(1))
                .and_then(|rest| rest.get(..10))
                .and_then(|d| d.parse::<usize>().ok());
            let Some(i) = i else { return };
            let contacts = self.contacts.load(Ordering::Relaxed).max(1);
            let to = format!("+{}", 16_505_000_000u64 + (i % contacts) as u64);
            let posted = self.posted.lock().ok().and_then(|p| p.get(&i).copied());
            if let (Some(t), Ok(mut pending)) = (posted, self.pending.lock()) {
                pending.insert(to, t);
            }
            return;
        }
        self.messages.fetch_add(1, Ordering::Relaxed);
        let Some(to) = body["to"].as_str() else {
            return;
        };
        if let Some(text) = &self.reply_text {
            if body["text"]["body"].as_str() != Some(text.as_str()) {
                return;
            }
            self.replies.fetch_add(1, Ordering::Relaxed);
            let t = to
                .trim_start_matches('+')
                .parse::<u64>()
                .ok()
                .and_then(|c| self.unanswered.lock().ok()?.get_mut(&c)?.pop_front());
            if let (Some(t), Ok(mut e2e)) = (t, self.e2e.lock()) {
                e2e.push(t.elapsed().as_micros() as u64);
            }
            return;
        }
        let t = self.pending.lock().ok().and_then(|mut p| p.remove(to));
        if let (Some(t), Ok(mut e2e)) = (t, self.e2e.lock()) {
            e2e.push(t.elapsed().as_micros() as u64);
        }
    }
}

async fn fake_graph(port: u16, replies: Arc<Replies>, start: Instant) {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let data = web::Data::new((replies, start));
    let server = HttpServer::new(move || {
        App::new().app_data(data.clone()).route(
            "/{v}/{id}/messages",
            web::post().to(
                |d: web::Data<(Arc<Replies>, Instant)>, body: web::Bytes| async move {
                    let n = d.0.count.fetch_add(1, Ordering::Relaxed);
                    let answered = d.0.replies.load(Ordering::Relaxed);
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                        d.0.observe(&v);
                    }
                    let ms = d.1.elapsed().as_millis() as u64;
                    d.0.last_ms.store(ms, Ordering::Relaxed);
                    if d.0.replies.load(Ordering::Relaxed) != answered {
                        d.0.last_reply_ms.fetch_max(ms, Ordering::Relaxed);
                    }
                    HttpResponse::Ok().json(serde_json::json!({
                        "messaging_product": "whatsapp",
                        "contacts": [{"input": "+16505550000", "wa_id": "16505550000"}],
                        "messages": [{"id": format!("wamid.LOAD{n}")}]
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

#[tokio::main]
async fn main() {
    let args = Arc::new(parse_args());
    let replies = Arc::new(Replies {
        reply_text: args.reply_text.clone(),
        ..Replies::default()
    });
    replies.contacts.store(args.contacts, Ordering::Relaxed);
    let origin = Instant::now();
    if let Some(port) = args.fake_graph {
        fake_graph(port, replies.clone(), origin).await;
    }
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .expect("client");
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (args, client, next) = (args.clone(), client.clone(), next.clone());
        let replies = replies.clone();
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= args.requests {
                    break;
                }
                if let Some(rate) = args.rate {
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let b = body(run, i, args.contacts);
                let sig = sign(&args.secret, &b);
                let t = Instant::now();
                if args.fake_graph.is_some() && args.reply_text.is_some() {
                    if let Ok(mut u) = replies.unanswered.lock() {
                        u.entry(wa_id(i, args.contacts)).or_default().push_back(t);
                    }
                } else if args.fake_graph.is_some()
                    && let Ok(mut p) = replies.posted.lock()
                {
                    p.insert(i, t);
                }
                let status = match client
                    .post(&args.url)
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
                lat.push(t.elapsed().as_micros() as u64);
                *statuses.entry(status).or_default() += 1;
            }
            (lat, statuses)
        }));
    }
    let mut all = Vec::with_capacity(args.requests);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for w in workers {
        let (lat, st) = w.await.expect("worker");
        all.extend(lat);
        for (k, v) in st {
            *statuses.entry(k).or_default() += v;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let ok = statuses.get(&200).copied().unwrap_or(0);
    println!(
        "requests {} concurrency {} rate {} -> {:.0} acknowledged/s over {:.2}s",
        args.requests,
        args.concurrency,
        args.rate.map_or("max".to_owned(), |r| format!("{r}/s")),
        ok as f64 / elapsed,
        elapsed
    );
    println!(
        "ack latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        percentile(&all, 0.50),
        percentile(&all, 0.90),
        percentile(&all, 0.99),
        percentile(&all, 1.0)
    );
    println!("statuses (0 = connection error): {statuses:?}");
    if args.fake_graph.is_some() {
        // Wait until the replies stop coming (2 s without one).
        let mut last = u64::MAX;
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let n = replies.count.load(Ordering::Relaxed);
            if n == last {
                break;
            }
            last = n;
        }
        let span = replies.last_ms.load(Ordering::Relaxed) as f64 / 1000.0
            - (start - origin).as_secs_f64();
        let messages = replies.messages.load(Ordering::Relaxed);
        println!(
            "requests to the fake Graph API: {last} ({messages} messages, {} read receipts) in {span:.2}s -> {:.0} messages/s",
            last - messages,
            messages as f64 / span.max(0.001)
        );
        if let Some(text) = &args.reply_text {
            let n = replies.replies.load(Ordering::Relaxed);
            let span = replies.last_reply_ms.load(Ordering::Relaxed) as f64 / 1000.0
                - (start - origin).as_secs_f64();
            println!(
                "replies ({text:?}): {n} of {} messages in {span:.2}s -> {:.0} replies/s",
                args.requests,
                n as f64 / span.max(0.001)
            );
        }
        let mut e2e = replies.e2e.lock().map(|e| e.clone()).unwrap_or_default();
        e2e.sort_unstable();
        println!(
            "end to end (POST -> first reply at the fake), {} messages: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2} ms",
            e2e.len(),
            percentile(&e2e, 0.50),
            percentile(&e2e, 0.90),
            percentile(&e2e, 0.99),
            percentile(&e2e, 1.0)
        );
    }
}
