//! The real binary, killed: `kill -9` while replies are being sent loses
//! none of them (a job is sent twice only when the process died between
//! Meta's answer and recording it), and SIGTERM finishes the sends in
//! flight, refuses webhooks with 503 and exits 0, leaving the rest queued
//! for the next start.

#![cfg(unix)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::json;
use whatsify::crypto::signature::sign;

use crate::conversation::delivery;
use crate::graph::{FakeGraph, Sent};
use crate::helpers::{ACCESS_TOKEN, APP_SECRET, Backend, embedded, free_port, redis, test_env};

/// Senders per instance (`outbox.senders` default): each has at most one
/// request in flight, so a kill repeats at most this many.
const SENDERS: usize = 32;

/// The logs of every instance a test started, for failure messages.
#[derive(Default)]
pub(crate) struct Logs(Vec<PathBuf>);

impl Logs {
    /// The last lines of each instance's log.
    pub(crate) fn tail(&self) -> String {
        let mut out = String::new();
        for (i, path) in self.0.iter().enumerate() {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(40);
            out.push_str(&format!(
                "\n----- instance {i} ({}), last {} of {} lines -----\n",
                path.display(),
                lines.len() - from,
                lines.len()
            ));
            for l in &lines[from..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

/// One run of `whatsify serve`; killed (SIGKILL) on drop if still running.
pub(crate) struct Binary {
    child: Child,
    port: u16,
}

impl Binary {
    /// Starts the binary on `port` with `env`, its stderr in a new log
    /// file, and waits until the port accepts connections.
    pub(crate) async fn start(
        dir: &Path,
        port: u16,
        env: &[(String, String)],
        logs: &mut Logs,
    ) -> Binary {
        Self::start_with(dir, port, env, logs, "").await
    }

    /// As [`Binary::start`], with this settings file (`whatsify.toml` in
    /// `dir`, which a test may rewrite before a SIGHUP).
    async fn start_with(
        dir: &Path,
        port: u16,
        env: &[(String, String)],
        logs: &mut Logs,
        settings: &str,
    ) -> Binary {
        let config = dir.join("whatsify.toml");
        std::fs::write(&config, settings).expect("write config");
        let log = dir.join(format!("whatsify-{}.log", logs.0.len()));
        let mut env = env.to_vec();
        env.retain(|(k, _)| k != "WHATSIFY__SERVER__BIND");
        env.push(("WHATSIFY__SERVER__BIND".into(), format!("127.0.0.1:{port}")));
        let child = Command::new(env!("CARGO_BIN_EXE_whatsify"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .envs(env)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("the binary starts");
        logs.0.push(log);
        let mut bin = Binary { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return bin;
            }
            if let Ok(Some(status)) = bin.child.try_wait() {
                panic!("the binary exited at start ({status}){}", logs.tail());
            }
            assert!(
                Instant::now() < deadline,
                "the binary did not listen on {port} within 30 s{}",
                logs.tail()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// SIGKILL, and reaps the process.
    pub(crate) fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {sig} failed");
    }

    /// Waits (bounded) for the process to exit.
    async fn exited_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Posts a signed webhook until it is taken (200): connection errors and
/// 503 are retried, as Meta retries them. Panics after 60 s.
pub(crate) async fn post_until_taken(client: &reqwest::Client, url: &str, body: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sent = client
            .post(url)
            .header("Content-Type", "application/json")
            .header("X-Hub-Signature-256", sign(APP_SECRET, body))
            .body(body.to_vec())
            .send()
            .await;
        let why = match sent {
            Ok(r) if r.status() == 200 => return,
            Ok(r) if r.status() == 503 => "503".to_owned(),
            Ok(r) => panic!("webhook answered {}", r.status()),
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "webhook not taken within 60 s: {why}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn job_of(s: &Sent) -> String {
    s.body["biz_opaque_callback_data"]
        .as_str()
        .expect("every reply carries its job id")
        .to_owned()
}

pub(crate) fn distinct_jobs(sent: &[Sent]) -> usize {
    sent.iter().map(job_of).collect::<HashSet<_>>().len()
}

/// Per recipient (`to`), the kinds of its replies in the order they were
/// first accepted (a re-sent job counts once, where it first went out).
pub(crate) fn kinds_by_recipient(sent: &[Sent]) -> BTreeMap<String, Vec<String>> {
    let mut seen = HashSet::new();
    let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in sent {
        if !seen.insert(job_of(s)) {
            continue;
        }
        let to = s.body["to"].as_str().unwrap_or("?").to_owned();
        let kind = if crate::graph::is_notice(&s.body) {
            "notice".to_owned()
        } else {
            s.body["type"].as_str().unwrap_or("?").to_owned()
        };
        by.entry(to).or_default().push(kind);
    }
    by
}

/// Waits (bounded) until the fake accepted `n` distinct jobs.
async fn wait_for_jobs(graph: &FakeGraph, n: usize, limit: Duration) -> Vec<Sent> {
    let deadline = Instant::now() + limit;
    loop {
        let sent = graph.sent();
        if distinct_jobs(&sent) >= n || Instant::now() > deadline {
            return sent;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn hi() -> serde_json::Value {
    json!({ "type": "text", "text": { "body": "hi" } })
}

/// Conversations under way while the bot is killed (issue 7, point 5).
const CONTACTS: usize = 2000;
const HIS_PER_CONTACT: usize = 2;
/// The welcome flow answers every "hi" (in a session or not) with a text
/// and the menu buttons; the first answer to a contact comes after the
/// privacy notice.
const REPLIES_PER_HI: usize = 2;
/// Pauses between a (re)start and the next kill: the kills land while
/// webhooks are coming in and replies are going out.
const KILL_AFTER_MS: [u64; 4] = [1700, 2300, 1500, 2100];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_queued_reply() {
    let graph = FakeGraph::start().await;
    let b = redis();
    assert!(matches!(b.backend, Backend::Redis { .. }));
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let env = test_env(
        &b.backend,
        &[
            ("WHATSIFY__META__GRAPH_API_BASE", graph.base.clone()),
            ("WHATSIFY__OUTBOX__MESSAGES_PER_SECOND", "1000".into()),
            ("WHATSIFY__OUTBOX__MARK_READ", "false".into()),
        ],
    );
    // A CRM receiver too: its events survive the kills like the replies.
    let crm = crate::integrations::Receiver::start(31).await;
    let hooks = crm.settings("crm", &["contact.created"], &[]);
    let mut logs = Logs::default();
    let mut bin = Binary::start_with(dir.path(), port, &env, &mut logs, &hooks).await;

    let wa_ids: Vec<String> = (0..CONTACTS).map(|i| format!("155501{i:05}")).collect();
    let bodies: Vec<Vec<u8>> = (0..HIS_PER_CONTACT)
        .flat_map(|n| {
            wa_ids.iter().enumerate().map(move |(i, w)| {
                delivery(
                    w,
                    &format!("Crash {i}"),
                    &format!("wamid.CRASH{i:05}x{n:02}"),
                    hi(),
                )
            })
        })
        .collect();
    let expected = CONTACTS * (1 + HIS_PER_CONTACT * REPLIES_PER_HI);

    let webhooks = bodies.len();
    let started = Instant::now();
    let url = bin.url("/webhook");
    // Meta's retries: a webhook refused, or whose answer was lost in a
    // kill, is posted again (a duplicate when it had been taken).
    let posting = tokio::spawn(async move {
        let client = reqwest::Client::new();
        futures_util::stream::iter(bodies.iter())
            .for_each_concurrent(16, |body| post_until_taken(&client, &url, body))
            .await;
        started.elapsed()
    });

    let mut at_kill = Vec::new();
    for pause in KILL_AFTER_MS {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        bin.kill_9();
        at_kill.push(graph.sent().len());
        bin = Binary::start_with(dir.path(), port, &env, &mut logs, &hooks).await;
    }
    let kills = KILL_AFTER_MS.len();
    let posted_in = posting.await.expect("posting");

    // Contacts a killed sender held stay held until their lease expires
    // (4 s, no longer renewed): the last instance takes them after that.
    let sent = wait_for_jobs(&graph, expected, Duration::from_secs(120)).await;
    let elapsed = started.elapsed();
    // Anything late (an extra or duplicate reply) shows up here.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent_final = graph.sent();
    let replies = distinct_jobs(&sent_final);
    let duplicates = sent_final.len() - replies;
    let mut accepted_per_job: HashMap<String, usize> = HashMap::new();
    for s in &sent_final {
        *accepted_per_job.entry(job_of(s)).or_default() += 1;
    }
    let most = accepted_per_job.values().copied().max().unwrap_or(0);
    // The longest silence of the fake: contacts a killed sender held wait
    // for their lease to expire.
    let mut arrivals: Vec<Instant> = graph.requests().iter().map(|r| r.at).collect();
    arrivals.sort();
    let longest_gap = arrivals
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    eprintln!(
        "kill -9: {replies} distinct replies of {expected} expected, {} accepted requests, \
         {duplicates} duplicates (bound {}), most accepts of one job {most}, {kills} kills, \
         replies accepted at each kill {at_kill:?}, posted {webhooks} webhooks in {:.1} s, \
         all delivered after {:.1} s, {} requests in all, longest pause between two \
         requests {:.1} s",
        sent_final.len(),
        kills * SENDERS,
        posted_in.as_secs_f64(),
        elapsed.as_secs_f64(),
        graph.requests().len(),
        longest_gap.as_secs_f64(),
    );

    assert_eq!(
        distinct_jobs(&sent),
        expected,
        "replies lost (or not delivered within 120 s){}",
        logs.tail()
    );
    assert_eq!(
        replies,
        expected,
        "more distinct replies than expected{}",
        logs.tail()
    );
    let by = kinds_by_recipient(&sent_final);
    assert_eq!(by.len(), CONTACTS, "replies to {} recipients", by.len());
    let one_hi = ["text", "interactive"];
    let want: Vec<&str> = std::iter::once("notice")
        .chain(
            one_hi
                .iter()
                .copied()
                .cycle()
                .take(HIS_PER_CONTACT * REPLIES_PER_HI),
        )
        .collect();
    for (to, kinds) in &by {
        assert_eq!(
            kinds,
            &want,
            "the replies to {to} went out in the wrong order{}",
            logs.tail()
        );
    }
    assert!(
        duplicates <= kills * SENDERS,
        "{duplicates} duplicates for {kills} kills of {SENDERS} senders{}",
        logs.tail()
    );
    // Every contact's contact.created reached the CRM, signed; a repeat
    // only for a delivery in flight at a kill.
    let deadline = Instant::now() + Duration::from_secs(90);
    let distinct = |got: &[crate::integrations::Got]| {
        got.iter()
            .map(|g| g.id.clone())
            .collect::<HashSet<_>>()
            .len()
    };
    while distinct(&crm.got()) < CONTACTS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = crm.got();
    eprintln!(
        "kill -9: the CRM got {} events, {} distinct, of {CONTACTS}",
        got.len(),
        distinct(&got)
    );
    assert_eq!(distinct(&got), CONTACTS, "events lost{}", logs.tail());
    assert!(got.iter().all(|g| g.verified));
    assert!(
        got.len() - distinct(&got) <= kills * SENDERS,
        "{} repeated events",
        got.len() - distinct(&got)
    );
    graph.stop().await;
}

/// A TCP relay in front of the fake Graph API that counts the chunks the
/// binary sent: a request has begun arriving once it is above 0 (the fake
/// only records a request after answering it).
struct Relay {
    base: String,
    begun: Arc<AtomicUsize>,
}

async fn relay(to: &FakeGraph) -> Relay {
    let target = to
        .base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host:port")
        .to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let begun = Arc::new(AtomicUsize::new(0));
    let counter = begun.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let target = target.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let (mut in_r, mut in_w) = inbound.into_split();
                let (mut out_r, mut out_w) = outbound.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut out_r, &mut in_w).await;
                    let _ = in_w.shutdown().await;
                });
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match in_r.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            counter.fetch_add(1, Ordering::SeqCst);
                            if out_w.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = out_w.shutdown().await;
            });
        }
    });
    Relay {
        base: format!("http://127.0.0.1:{port}/v23.0"),
        begun,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_sends_refuses_webhooks_and_exits_0() {
    let graph = FakeGraph::start().await;
    let relay = relay(&graph).await;
    let b = embedded();
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let env = test_env(
        &b.backend,
        &[
            ("WHATSIFY__META__GRAPH_API_BASE", relay.base.clone()),
            ("WHATSIFY__OUTBOX__MARK_READ", "false".into()),
            // One sender: while it holds Ana, Bob's replies wait queued.
            ("WHATSIFY__OUTBOX__SENDERS", "1".into()),
        ],
    );
    let mut logs = Logs::default();
    let mut bin = Binary::start(dir.path(), port, &env, &mut logs).await;
    let client = reqwest::Client::new();

    graph.set_delay(Some(Duration::from_secs(2)));
    let ana = delivery("16505550101", "Ana", "wamid.TERM1", hi());
    post_until_taken(&client, &bin.url("/webhook"), &ana).await;

    // Ana's first reply has reached the fake, which sits on it for 2 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    while relay.begun.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "no send reached the fake within 30 s{}",
            logs.tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bob = delivery("16505550102", "Bob", "wamid.TERM2", hi());
    post_until_taken(&client, &bin.url("/webhook"), &bob).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        graph.requests().is_empty(),
        "the fake answered before the signal: the send is not in flight"
    );

    bin.signal("-TERM");
    // The flag is set by the signal's task: wait (bounded) until readiness
    // says so, then a webhook is refused.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = client.get(bin.url("/readyz")).send().await;
        if r.is_ok_and(|r| r.status() == 503) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz did not turn 503 within 10 s of SIGTERM{}",
            logs.tail()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let carl = delivery("16505550103", "Carl", "wamid.TERM3", hi());
    let refused = client
        .post(bin.url("/webhook"))
        .header("Content-Type", "application/json")
        .header("X-Hub-Signature-256", sign(APP_SECRET, &carl))
        .body(carl)
        .send()
        .await
        .expect("the server still answers while it shuts down");
    assert_eq!(refused.status(), 503, "{}", logs.tail());
    assert!(
        refused.headers().get("retry-after").is_some(),
        "503 without Retry-After"
    );

    let status = bin.exited_within(Duration::from_secs(30)).await;
    let before_exit = graph.sent();
    let describe_all = |sent: &[Sent]| -> Vec<String> {
        sent.iter()
            .map(|s| {
                format!(
                    "{} {}",
                    s.body["to"].as_str().unwrap_or("?"),
                    s.body["type"].as_str().unwrap_or("?")
                )
            })
            .collect()
    };
    eprintln!(
        "SIGTERM: exit {status:?}, accepted before the exit: {:?}",
        describe_all(&before_exit)
    );
    assert!(
        status.is_some(),
        "still running 30 s after SIGTERM{}",
        logs.tail()
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", logs.tail());
    assert!(
        before_exit
            .first()
            .is_some_and(|s| s.body["to"] == "+16505550101" && s.body["type"] == "text"),
        "the send in flight at SIGTERM was not finished{}",
        logs.tail()
    );
    assert!(
        before_exit.iter().all(|s| s.body["to"] == "+16505550101"),
        "a contact was taken after SIGTERM{}",
        logs.tail()
    );
    assert!(
        logs.tail().contains("shutting down"),
        "no shutdown line in the log{}",
        logs.tail()
    );

    // Next start on the same store: what stayed queued goes out.
    graph.set_delay(None);
    let _bin = Binary::start(dir.path(), port, &env, &mut logs).await;
    // Ana's and Bob's: the privacy notice, the greeting, the menu.
    let sent = wait_for_jobs(&graph, 6, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent_final = graph.sent();
    eprintln!(
        "SIGTERM: after the restart {} accepted, {} distinct: {:?}",
        sent_final.len(),
        distinct_jobs(&sent_final),
        describe_all(&sent_final)
    );
    assert_eq!(distinct_jobs(&sent), 6, "replies lost{}", logs.tail());
    assert_eq!(
        sent_final.len(),
        6,
        "a reply went out twice after a graceful stop{}",
        logs.tail()
    );
    let by = kinds_by_recipient(&sent_final);
    let pair = vec![
        "notice".to_owned(),
        "text".to_owned(),
        "interactive".to_owned(),
    ];
    assert_eq!(
        by,
        BTreeMap::from([
            ("+16505550101".to_owned(), pair.clone()),
            ("+16505550102".to_owned(), pair),
        ]),
        "Ana's and Bob's replies, in order, and nothing for the refused webhook"
    );
    graph.stop().await;
}

/// Meta refuses the token: sending pauses. The operator puts the new token
/// in the settings file and sends SIGHUP: sending resumes at once (the
/// probe interval is an hour, so no probe did it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_new_access_token_resumes_a_paused_number() {
    let graph = FakeGraph::start().await;
    let b = embedded();
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut env = test_env(
        &b.backend,
        &[
            ("WHATSIFY__META__GRAPH_API_BASE", graph.base.clone()),
            ("WHATSIFY__OUTBOX__MARK_READ", "false".into()),
            ("WHATSIFY__OUTBOX__PROBE_INTERVAL", "1h".into()),
        ],
    );
    // The token comes from the file, which SIGHUP re-reads.
    env.retain(|(k, _)| k != "WHATSIFY__META__ACCESS_TOKEN");
    let mut logs = Logs::default();
    let bin = Binary::start_with(
        dir.path(),
        port,
        &env,
        &mut logs,
        "[meta]\naccess_token = \"expired-token-0123456789\"\n",
    )
    .await;
    let client = reqwest::Client::new();
    let readiness = async |client: &reqwest::Client| -> serde_json::Value {
        client
            .get(bin.url("/readyz"))
            .send()
            .await
            .expect("readyz")
            .json::<serde_json::Value>()
            .await
            .unwrap_or_default()["status"]
            .clone()
    };
    let ana = delivery("16505550101", "Ana", "wamid.HUP1", hi());
    post_until_taken(&client, &bin.url("/webhook"), &ana).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while readiness(&client).await != "sending_paused" {
        assert!(Instant::now() < deadline, "no pause{}", logs.tail());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        graph.requests().len(),
        1,
        "one refused request, then nothing"
    );
    std::fs::write(
        dir.path().join("whatsify.toml"),
        format!("[meta]\naccess_token = \"{ACCESS_TOKEN}\"\n"),
    )
    .expect("rewrite settings");
    bin.signal("-HUP");
    // The first-contact privacy notice and the two replies.
    let sent = wait_for_jobs(&graph, 3, Duration::from_secs(20)).await;
    assert_eq!(
        distinct_jobs(&sent),
        3,
        "the notice and both replies after the reload{}",
        logs.tail()
    );
    assert_eq!(readiness(&client).await, "ready");
}

/// SIGHUP puts new secrets and limits in force without a restart or a
/// dropped request: a rotated app secret (the old one kept as previous,
/// then dropped), a new admin token, and a lower send rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_secrets_and_limits() {
    let graph = FakeGraph::start().await;
    let b = embedded();
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut env = test_env(
        &b.backend,
        &[
            ("WHATSIFY__META__GRAPH_API_BASE", graph.base.clone()),
            ("WHATSIFY__OUTBOX__MARK_READ", "false".into()),
        ],
    );
    // These come from the file, which SIGHUP re-reads.
    env.retain(|(k, _)| {
        !matches!(
            k.as_str(),
            "WHATSIFY__META__APP_SECRET"
                | "WHATSIFY__META__APP_SECRET_PREVIOUS"
                | "WHATSIFY__ADMIN__TOKEN"
        )
    });
    let (old_secret, new_secret) = ("old-app-secret-0123456789", "new-app-secret-9876543210");
    let (old_admin, new_admin) = (
        "old-admin-token-0123456789-abcdefgh",
        "new-admin-token-9876543210-hgfedcba",
    );
    let file = |secret: &str, previous: &str, admin: &str, rate: u32| {
        format!(
            "[meta]\napp_secret = \"{secret}\"\napp_secret_previous = \"{previous}\"\n\
             [admin]\ntoken = \"{admin}\"\n[outbox]\nmessages_per_second = {rate}\n"
        )
    };
    let mut logs = Logs::default();
    let bin = Binary::start_with(
        dir.path(),
        port,
        &env,
        &mut logs,
        &file(old_secret, "", old_admin, 1000),
    )
    .await;
    let client = reqwest::Client::new();
    let post = async |secret: &str, n: usize| -> u16 {
        let body = delivery("16505550171", "Reload", &format!("wamid.RL{n}"), hi());
        client
            .post(bin.url("/webhook"))
            .header("Content-Type", "application/json")
            .header("X-Hub-Signature-256", sign(secret, &body))
            .body(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    let admin = async |token: &str| -> u16 {
        client
            .get(bin.url("/admin/stats"))
            .bearer_auth(token)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    assert_eq!(post(old_secret, 1).await, 200);
    assert_eq!(post(new_secret, 2).await, 401);
    assert_eq!(admin(old_admin).await, 200);
    // Rotation: the new secret in force, the old one still accepted.
    std::fs::write(
        dir.path().join("whatsify.toml"),
        file(new_secret, old_secret, new_admin, 2),
    )
    .expect("rewrite");
    bin.signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    while post(new_secret, 3).await != 200 {
        assert!(
            Instant::now() < deadline,
            "new secret not in force{}",
            logs.tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        post(old_secret, 4).await,
        200,
        "the previous secret is still accepted"
    );
    assert_eq!(
        admin(old_admin).await,
        401,
        "the old admin token is refused"
    );
    assert_eq!(admin(new_admin).await, 200);
    // The lower rate is in force: five his get ten answers.
    let before = graph.sent().len();
    let started = Instant::now();
    for n in 10..15 {
        assert_eq!(post(new_secret, n).await, 200);
    }
    let sent = wait_for_jobs(&graph, before + 10, Duration::from_secs(30)).await;
    let span = started.elapsed();
    assert!(sent.len() >= before + 10, "the replies{}", logs.tail());
    // Ten replies at two a second cannot take less than 4.5 s (a lower
    // bound: the pacing in force, not a speed).
    assert!(
        span >= Duration::from_millis(3500),
        "ten replies in {span:?}: the new rate is not in force"
    );
    // The old secret dropped.
    std::fs::write(
        dir.path().join("whatsify.toml"),
        file(new_secret, "", new_admin, 2),
    )
    .expect("rewrite");
    bin.signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    while post(old_secret, 20).await != 401 {
        assert!(
            Instant::now() < deadline,
            "old secret still accepted{}",
            logs.tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(logged(&logs, "settings reloaded") >= 2);
    assert!(
        !logs.0.iter().any(|p| {
            let t = std::fs::read_to_string(p).unwrap_or_default();
            [old_secret, new_secret, old_admin, new_admin]
                .iter()
                .any(|s| t.contains(s))
        }),
        "a secret in the logs"
    );
    eprintln!("ten replies at outbox.messages_per_second = 2 after SIGHUP took {span:?}");
}

/// `log.format = "json"`: every line is a JSON object; every line of a
/// webhook request carries its request id, and every line of a
/// conversation step or a send carries the pseudonymous contact id (never
/// the number).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id_and_the_contact_id() {
    let graph = FakeGraph::start().await;
    let b = embedded();
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let env = test_env(
        &b.backend,
        &[
            ("WHATSIFY__META__GRAPH_API_BASE", graph.base.clone()),
            ("WHATSIFY__LOG__FORMAT", "json".into()),
            (
                "RUST_LOG",
                "debug,h2=info,hyper=info,reqwest=info,rustls=info".into(),
            ),
        ],
    );
    let mut logs = Logs::default();
    let bin = Binary::start(dir.path(), port, &env, &mut logs).await;
    let client = reqwest::Client::new();
    let wa = "16505550191";
    post_until_taken(
        &client,
        &bin.url("/webhook"),
        &delivery(wa, "Jay", "wamid.J1", hi()),
    )
    .await;
    let stop = json!({"type": "text", "text": {"body": "STOP"}});
    post_until_taken(
        &client,
        &bin.url("/webhook"),
        &delivery(wa, "Jay", "wamid.J2", stop),
    )
    .await;
    // The welcome (two messages) and the opt-out confirmation.
    wait_for_jobs(&graph, 3, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = std::fs::read_to_string(&logs.0[0]).expect("log");
    let (mut requests, mut steps, mut sends) = (0, 0, 0);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let target = v["target"].as_str().unwrap_or("");
        assert!(!line.contains(wa), "the number in a log line: {line}");
        let in_request = v["spans"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["request_id"].is_string()));
        if target.starts_with("whatsify::webhook") {
            requests += 1;
            assert!(in_request, "no request id: {line}");
        }
        if target.starts_with("whatsify::outbox") {
            sends += 1;
        }
        if target.starts_with("whatsify::worker") || target.starts_with("whatsify::outbox") {
            steps += 1;
            let contact = v["contact"].as_str().or(v["span"]["contact"].as_str());
            assert!(
                contact.is_some_and(|c| c.len() == 32 && c.bytes().all(|b| b.is_ascii_hexdigit())),
                "no pseudonymous contact id: {line}"
            );
        }
    }
    assert!(requests >= 2, "request lines: {requests}{}", logs.tail());
    assert!(steps >= 2, "conversation lines: {steps}{}", logs.tail());
    assert!(sends >= 3, "send lines: {sends}{}", logs.tail());
}

/// How many times the instances logged `what`.
fn logged(logs: &Logs, what: &str) -> usize {
    logs.0
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .matches(what)
                .count()
        })
        .sum()
}

/// A campaign survives `kill -9` mid-drain: the next start goes on from
/// what is left, and every consenting contact gets exactly one message.
/// A message whose request was in flight at the kill is not sent again
/// once Meta's status webhook says it has it (the status poster below
/// plays Meta's part); one whose request never left is sent after
/// `outbox.unconfirmed_wait`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_campaign_sends_each_consenting_contact_one_message() {
    use std::sync::Mutex;
    let graph = FakeGraph::start().await;
    // Requests take a while, so the kills land with some in flight.
    graph.set_delay(Some(Duration::from_millis(200)));
    let b = redis();
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let env = test_env(
        &b.backend,
        &[
            ("WHATSIFY__META__GRAPH_API_BASE", graph.base.clone()),
            ("WHATSIFY__META__PHONE_NUMBER_ID", "106540352242922".into()),
            ("WHATSIFY__OUTBOX__MESSAGES_PER_SECOND", "1000".into()),
            ("WHATSIFY__OUTBOX__MARK_READ", "false".into()),
            ("WHATSIFY__OUTBOX__UNCONFIRMED_WAIT", "3s".into()),
        ],
    );
    let mut logs = Logs::default();
    let mut bin = Binary::start(dir.path(), port, &env, &mut logs).await;
    let client = reqwest::Client::new();
    // 200 contacts say START (consent through the real path); 50 only
    // say hi.
    let consenting: Vec<String> = (0..200).map(|i| format!("1555020{i:04}")).collect();
    let others: Vec<String> = (0..50).map(|i| format!("1555030{i:04}")).collect();
    let bodies: Vec<Vec<u8>> = consenting
        .iter()
        .map(|w| {
            delivery(
                w,
                "Yes",
                &format!("wamid.K9{w}"),
                json!({"type": "text", "text": {"body": "START"}}),
            )
        })
        .chain(
            others
                .iter()
                .map(|w| delivery(w, "No", &format!("wamid.K9{w}"), hi())),
        )
        .collect();
    let url = bin.url("/webhook");
    futures_util::stream::iter(bodies.iter())
        .for_each_concurrent(16, |body| post_until_taken(&client, &url, body))
        .await;
    // Their answers are all out before the campaign starts, so the
    // requests in flight at the kill are the campaign's.
    let mut last = (usize::MAX, Instant::now());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = graph.sent().len();
        if n != last.0 || graph.in_flight() > 0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > Duration::from_millis(700) {
            break;
        }
        assert!(Instant::now() < deadline, "the answers did not settle");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let audience: Vec<String> = consenting.iter().chain(&others).cloned().collect();
    let campaign = json!({
        "name": "Kill nine",
        "template": {"name": "flash_sale", "language": {"code": "en_US"}},
        "audience": {"wa_ids": audience},
        "opt_out": {"button": 0},
        "rate_per_second": 60,
    });
    let created: serde_json::Value = client
        .post(bin.url("/admin/campaigns"))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .json(&campaign)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let id = created["id"].as_str().expect("campaign id").to_owned();
    let prefix = format!("cmp.{id}.");
    let of_campaign = |sent: &[Sent]| -> Vec<Sent> {
        sent.iter()
            .filter(|s| {
                s.body["biz_opaque_callback_data"]
                    .as_str()
                    .is_some_and(|j| j.starts_with(&prefix))
            })
            .cloned()
            .collect()
    };
    // Meta's part: a `sent` status for every message it accepted, posted
    // until the server takes it (it may be down).
    let posted = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(Mutex::new(false));
    let poster = {
        let graph = graph.clone();
        let posted = posted.clone();
        let stop = stop.clone();
        let client = client.clone();
        let url = format!("http://127.0.0.1:{port}/webhook");
        let prefix = prefix.clone();
        tokio::spawn(async move {
            loop {
                if *stop.lock().unwrap_or_else(|p| p.into_inner()) {
                    return;
                }
                let sent = graph.sent();
                let from = posted.load(Ordering::SeqCst);
                for (i, s) in sent.iter().enumerate().skip(from) {
                    let job = s.body["biz_opaque_callback_data"].as_str().unwrap_or("");
                    if job.starts_with(&prefix) {
                        let body =
                            crate::campaigns::status(s, &format!("wamid.FAKE{i:08}"), "sent", None);
                        let taken = client
                            .post(&url)
                            .header("Content-Type", "application/json")
                            .header("X-Hub-Signature-256", sign(APP_SECRET, &body))
                            .body(body)
                            .send()
                            .await
                            .is_ok_and(|r| r.status() == 200);
                        if !taken {
                            break;
                        }
                    }
                    posted.store(i + 1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // Kill it while the campaign drains (200 at 60/s: about 3 s), with
    // about a dozen requests in flight.
    let mut at_kill = Vec::new();
    let mut in_flight_at_kill = 0;
    for pause in [1000] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        // Kill when campaign requests are in flight.
        let deadline = Instant::now() + Duration::from_secs(20);
        while graph.in_flight() < 3 || of_campaign(&graph.sent()).is_empty() {
            assert!(
                Instant::now() < deadline,
                "no requests in flight{}",
                logs.tail()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let fl = graph.in_flight();
        bin.kill_9();
        at_kill.push(of_campaign(&graph.sent()).len());
        in_flight_at_kill = fl;
        bin = Binary::start(dir.path(), port, &env, &mut logs).await;
    }
    // Contacts a killed sender held wait for their lease (4 s).
    let deadline = Instant::now() + Duration::from_secs(150);
    let report = loop {
        let r: serde_json::Value = match client
            .get(bin.url(&format!("/admin/campaigns/{id}")))
            .bearer_auth(crate::helpers::ADMIN_TOKEN)
            .send()
            .await
        {
            Ok(resp) => resp.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        // The messages in flight at the kill come back to a sender once
        // their lease lapses (4 s): it finds Meta's status and does not
        // send them again (or, with no status, sends them).
        let settled =
            logged(&logs, "confirmed by Meta; not sent again") + logged(&logs, "sending it again");
        if r["status"] == "dispatched" && r["queued"] == 0 && settled >= in_flight_at_kill {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "campaign not drained: {r}{}",
            logs.tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    *stop.lock().unwrap_or_else(|p| p.into_inner()) = true;
    let _ = poster.await;
    let sends = of_campaign(&graph.sent());
    let mut per: HashMap<String, usize> = HashMap::new();
    for s in &sends {
        *per.entry(
            s.body["to"]
                .as_str()
                .unwrap_or("")
                .trim_start_matches('+')
                .to_owned(),
        )
        .or_default() += 1;
    }
    eprintln!(
        "campaign kill -9: {} accepted requests for {} contacts, sent at each kill {at_kill:?}, \
         {in_flight_at_kill} requests in flight at the kill, {} in flight at a kill and confirmed by a status, {} sent again after no status came, report {report}",
        sends.len(),
        per.len(),
        logged(&logs, "confirmed by Meta; not sent again"),
        logged(&logs, "sending it again"),
    );
    assert!(
        logged(&logs, "confirmed by Meta; not sent again") > 0,
        "the kill should land with requests in flight (200 ms each, 60 a second){}",
        logs.tail()
    );
    assert_eq!(
        per.len(),
        consenting.len(),
        "every consenting contact, no one else{}",
        logs.tail()
    );
    assert!(
        consenting.iter().all(|w| per.get(w) == Some(&1)),
        "exactly one message each: {per:?}"
    );
    assert_eq!(report["sent"], consenting.len(), "{report}");
    assert_eq!(report["skipped"]["no_consent"], others.len(), "{report}");
}
