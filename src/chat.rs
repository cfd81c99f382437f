//! `whatsify chat`: talk to the flows in a terminal, as a customer would on
//! WhatsApp, through the whole real pipeline: the server runs in this
//! process on a temporary embedded store (with its own keys), each line is
//! posted as a signed webhook, the workers run the engine and the privacy
//! commands (STOP, START, HELP, MY DATA, DELETE MY DATA), and the senders
//! post the answers to a Graph API stand-in in this process that answers
//! as Meta documents; the answers are shown as a phone would show them.
//! Nothing leaves the machine.
//!
//! Buttons, list rows and a template's quick replies are numbered and can
//! be picked by number or by their text; `/wait 30m` moves the server's
//! clock so timeouts fire.

use std::io::{BufRead, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use crate::config::Settings;
use crate::domain::ContactId;
use crate::startup::Application;
use crate::store::Queue;

const HELP: &str = "Type as the customer would. Pick a button or list row by its number or text.\n\
/wait 30m   let time pass (timeouts fire)\n\
/image      send something a flow cannot read (a photo)\n\
/session    show where the conversation stands\n\
/quit       leave (or Ctrl-D)\n\
The privacy commands work as on WhatsApp: STOP, START, HELP, MY DATA, DELETE MY DATA.";

/// The business number the conversation happens on.
const PHONE_NUMBER_ID: &str = "100000000000001";
/// How long the bot may stay silent before a turn is over.
const QUIET: Duration = Duration::from_millis(250);
/// The longest a turn waits for the bot.
const TURN: Duration = Duration::from_secs(15);

/// Why the chat could not run.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("cannot set up the chat: {0}")]
    Setup(String),
}

/// What the Graph API stand-in received, in order.
#[derive(Default)]
struct Outbox {
    sent: Mutex<Vec<Value>>,
    uploads: Mutex<usize>,
}

async fn graph_messages(body: web::Json<Value>, outbox: web::Data<Outbox>) -> HttpResponse {
    let to = body["to"].as_str().unwrap_or_default().to_owned();
    let n = {
        let mut sent = outbox.sent.lock().unwrap_or_else(|p| p.into_inner());
        sent.push(body.into_inner());
        sent.len()
    };
    // Meta's documented success answer.
    HttpResponse::Ok().json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": to, "wa_id": to.trim_start_matches('+') }],
        "messages": [{ "id": format!("wamid.CHAT{n:08}") }],
    }))
}

async fn graph_media(_body: web::Bytes, outbox: web::Data<Outbox>) -> HttpResponse {
    let n = {
        let mut uploads = outbox.uploads.lock().unwrap_or_else(|p| p.into_inner());
        *uploads += 1;
        *uploads
    };
    HttpResponse::Ok().json(json!({ "id": format!("{n:015}") }))
}

/// The numbered choices the last answer offered: (reply kind, id, title).
#[derive(Default, Clone)]
struct Choices(Vec<(Kind, String, String)>);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Button,
    Row,
    QuickReply,
}

impl Choices {
    fn pick(&self, typed: &str) -> Option<&(Kind, String, String)> {
        if let Ok(n) = typed.trim().parse::<usize>() {
            return n.checked_sub(1).and_then(|i| self.0.get(i));
        }
        let want = crate::domain::text::normalize(typed);
        self.0
            .iter()
            .find(|(_, _, title)| crate::domain::text::normalize(title) == want)
    }
}

/// Writes one message the business sent the way a phone shows it, and
/// collects the choices it offers.
fn render(m: &Value, out: &mut impl Write, choices: &mut Choices) -> std::io::Result<()> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    match m["type"].as_str().unwrap_or_default() {
        "text" => writeln!(out, "bot> {}", text(&m["text"]["body"])),
        "interactive" => {
            let i = &m["interactive"];
            if let Some(h) = i["header"]["text"].as_str() {
                writeln!(out, "bot> *{h}*")?;
            }
            writeln!(out, "bot> {}", text(&i["body"]["text"]))?;
            if let Some(f) = i["footer"]["text"].as_str() {
                writeln!(out, "     _{f}_")?;
            }
            choices.0.clear();
            if i["type"] == "button" {
                for b in i["action"]["buttons"].as_array().into_iter().flatten() {
                    let (id, title) = (text(&b["reply"]["id"]), text(&b["reply"]["title"]));
                    choices.0.push((Kind::Button, id, title.clone()));
                    writeln!(out, "     [{}] {title}", choices.0.len())?;
                }
            } else {
                writeln!(out, "     ≡ {}", text(&i["action"]["button"]))?;
                for s in i["action"]["sections"].as_array().into_iter().flatten() {
                    if let Some(t) = s["title"].as_str() {
                        writeln!(out, "     {t}")?;
                    }
                    for r in s["rows"].as_array().into_iter().flatten() {
                        let (id, title) = (text(&r["id"]), text(&r["title"]));
                        choices.0.push((Kind::Row, id, title.clone()));
                        match r["description"].as_str() {
                            Some(d) => writeln!(out, "     [{}] {title} — {d}", choices.0.len())?,
                            None => writeln!(out, "     [{}] {title}", choices.0.len())?,
                        }
                    }
                }
            }
            Ok(())
        }
        "template" => {
            let t = &m["template"];
            writeln!(out, "bot> (template {})", text(&t["name"]))?;
            choices.0.clear();
            for c in t["components"].as_array().into_iter().flatten() {
                if c["sub_type"] == "quick_reply" {
                    for p in c["parameters"].as_array().into_iter().flatten() {
                        let payload = text(&p["payload"]);
                        choices
                            .0
                            .push((Kind::QuickReply, payload.clone(), payload.clone()));
                        writeln!(out, "     [{}] {payload}", choices.0.len())?;
                    }
                }
            }
            Ok(())
        }
        kind @ ("image" | "document" | "video" | "audio" | "sticker") => {
            let media = &m[kind];
            let what = media["filename"]
                .as_str()
                .or(media["link"].as_str())
                .unwrap_or("attached file");
            let caption = media["caption"].as_str().unwrap_or_default();
            writeln!(out, "bot> ({kind}: {what}) {caption}")
        }
        other => writeln!(out, "bot> ({other})"),
    }
}

/// The customer's side: builds the signed deliveries Meta would send.
struct Customer {
    wa_id: String,
    name: Option<String>,
    n: u64,
}

impl Customer {
    fn delivery(&mut self, now: u64, message: Value) -> Vec<u8> {
        self.n += 1;
        let mut message = message;
        message["from"] = json!(self.wa_id);
        message["id"] = json!(format!("wamid.CHATIN{:08}{now}", self.n));
        message["timestamp"] = json!(now.to_string());
        let name = self.name.clone().unwrap_or_default();
        serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{ "id": "100000000000000", "changes": [{ "field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": { "display_phone_number": "15550000000", "phone_number_id": PHONE_NUMBER_ID },
                "contacts": [{ "profile": { "name": name }, "wa_id": self.wa_id }],
                "messages": [message],
            }}]}],
        }))
        .unwrap_or_default()
    }
}

/// The message a typed line is: a tap on an offered choice, or text.
fn message_of(line: &str, choices: &Choices) -> Value {
    match choices.pick(line) {
        Some((Kind::Button, id, title)) => json!({
            "type": "interactive",
            "interactive": { "type": "button_reply", "button_reply": { "id": id, "title": title } },
        }),
        Some((Kind::Row, id, title)) => json!({
            "type": "interactive",
            "interactive": { "type": "list_reply", "list_reply": { "id": id, "title": title } },
        }),
        Some((Kind::QuickReply, payload, _)) => json!({
            "type": "button",
            "button": { "payload": payload, "text": payload },
        }),
        None => json!({ "type": "text", "text": { "body": line } }),
    }
}

/// The options of `whatsify chat`.
pub struct Options {
    pub wa_id: String,
    pub name: Option<String>,
    pub flows: std::path::PathBuf,
}

/// A running chat: the server, its stand-in Graph API, the customer.
struct Session {
    app_state: actix_web::web::Data<crate::state::AppState>,
    clock: crate::clock::Clock,
    address: String,
    app_secret: String,
    outbox: web::Data<Outbox>,
    shown: usize,
    client: reqwest::Client,
    customer: Customer,
    contact: crate::domain::ContactKey,
    _dir: tempfile::TempDir,
}

fn random_secret() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}

impl Session {
    async fn start(options: &Options) -> Result<Session, ChatError> {
        let setup = |e: &dyn std::fmt::Display| ChatError::Setup(e.to_string());
        let id = ContactId::from_parts(Some(&options.wa_id), None)
            .ok_or_else(|| ChatError::Setup("--as must be a WhatsApp id (digits)".into()))?;
        let outbox = web::Data::new(Outbox::default());
        let data = outbox.clone();
        let graph = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::JsonConfig::default().limit(1 << 20))
                .route("/{v}/{pn}/messages", web::post().to(graph_messages))
                .route("/{v}/{pn}/media", web::post().to(graph_media))
        })
        .workers(1)
        // Ctrl-C ends the chat, not just this stand-in.
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .map_err(|e| setup(&e))?;
        let graph_port = graph
            .addrs()
            .first()
            .map(|a| a.port())
            .ok_or_else(|| ChatError::Setup("no port for the Graph API stand-in".into()))?;
        tokio::spawn(graph.run());

        let dir = tempfile::tempdir().map_err(|e| setup(&e))?;
        let config = dir.path().join("chat.toml");
        std::fs::write(&config, "").map_err(|e| setup(&e))?;
        let app_secret = random_secret();
        let env: Vec<(String, String)> = [
            ("WHATSIFY__SERVER__BIND", "127.0.0.1:0".to_owned()),
            ("WHATSIFY__META__APP_SECRET", app_secret.clone()),
            ("WHATSIFY__META__VERIFY_TOKEN", random_secret()),
            ("WHATSIFY__META__ACCESS_TOKEN", random_secret()),
            (
                "WHATSIFY__META__GRAPH_API_BASE",
                format!("http://127.0.0.1:{graph_port}/v23.0"),
            ),
            (
                "WHATSIFY__STORE__PATH",
                dir.path().join("data").display().to_string(),
            ),
            ("WHATSIFY__FLOWS__DIR", options.flows.display().to_string()),
            ("WHATSIFY__OUTBOX__MARK_READ", "false".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let settings = Settings::load_from(Some(&config), env).map_err(|e| setup(&e))?;
        let store = crate::store::open(&settings.store)
            .await
            .map_err(|e| setup(&e))?;
        let app = Application::build_with_pools(&settings, store, 1, 2).map_err(|e| setup(&e))?;
        let address = format!("http://127.0.0.1:{}", app.port());
        let app_state = app.state();
        let clock = app.clock();
        let contact = app_state.pseudonymizer.contact_key(&id);
        tokio::spawn(app.run_until_stopped());
        Ok(Session {
            app_state,
            clock,
            address,
            app_secret,
            outbox,
            shown: 0,
            client: reqwest::Client::new(),
            customer: Customer {
                wa_id: options.wa_id.clone(),
                name: options.name.clone(),
                n: 0,
            },
            contact,
            _dir: dir,
        })
    }

    /// Posts a message as Meta would deliver it.
    async fn say(&mut self, message: Value) -> Result<(), ChatError> {
        let body = self.customer.delivery(self.clock.now(), message);
        let signature = crate::crypto::signature::sign(&self.app_secret, &body);
        let resp = self
            .client
            .post(format!("{}/webhook", self.address))
            .header("Content-Type", "application/json")
            .header("X-Hub-Signature-256", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| ChatError::Setup(format!("the server did not answer: {e}")))?;
        if !resp.status().is_success() {
            return Err(ChatError::Setup(format!(
                "the server refused the message ({})",
                resp.status()
            )));
        }
        Ok(())
    }

    /// Whether the contact's inbox and outbox are both empty.
    async fn idle(&self) -> bool {
        let store = &self.app_state.store;
        let inbox = store.read(&Queue::Contact(self.contact.clone()), 1).await;
        let outbox = store.read(&Queue::Outbox(self.contact.clone()), 1).await;
        matches!((inbox, outbox), (Ok(i), Ok(o)) if i.is_empty() && o.is_empty())
    }

    /// Waits until the bot has answered (nothing queued, quiet for a
    /// moment), then shows what it sent.
    async fn answers(
        &mut self,
        out: &mut impl Write,
        choices: &mut Choices,
    ) -> Result<(), ChatError> {
        let started = Instant::now();
        let mut last_count = self.sent_count();
        let mut quiet_since = Instant::now();
        // Timers come due are found by the workers' sweep (asked for by
        // `/wait`).
        tokio::time::sleep(Duration::from_millis(50)).await;
        while started.elapsed() < TURN {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let count = self.sent_count();
            if count != last_count {
                last_count = count;
                quiet_since = Instant::now();
            }
            if quiet_since.elapsed() >= QUIET && self.idle().await {
                break;
            }
        }
        let sent: Vec<Value> = {
            let all = self.outbox.sent.lock().unwrap_or_else(|p| p.into_inner());
            all[self.shown..].to_vec()
        };
        self.shown += sent.len();
        let mut offered = false;
        for m in &sent {
            render(m, out, choices)?;
            offered |= matches!(m["type"].as_str(), Some("interactive" | "template"));
        }
        // Only what is on screen now can be tapped: an answer with no
        // buttons takes the old ones away.
        if !sent.is_empty() && !offered {
            choices.0.clear();
        }
        out.flush()?;
        Ok(())
    }

    fn sent_count(&self) -> usize {
        self.outbox
            .sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Where the conversation stands, read from the store and opened.
    async fn where_now(&self) -> String {
        let store = &self.app_state.store;
        let key = self.contact.clone();
        let sealed = store.session(&key).await.ok().flatten();
        let wrapped = store.data_key(&key).await.ok().flatten();
        let state = sealed.zip(wrapped).and_then(|(s, w)| {
            let sealer = self.app_state.keyring.unwrap(&key, &w).ok()?;
            let plain = sealer
                .open(&s, &crate::domain::profile::session_context(&key))
                .ok()?;
            serde_json::from_slice::<crate::domain::profile::Conversation>(&plain).ok()
        });
        match state.and_then(|c| c.session) {
            Some(s) => format!("(at {}/{}, vars {:?})", s.flow, s.step, s.vars),
            None => "(no conversation under way)".to_owned(),
        }
    }
}

/// Runs the chat on `input` / `output` until `/quit` or end of input.
pub async fn run(
    options: Options,
    input: impl BufRead,
    mut output: impl Write,
) -> Result<(), ChatError> {
    let mut session = Session::start(&options).await?;
    let who = match &options.name {
        Some(n) => format!("{} ({n})", options.wa_id),
        None => options.wa_id.clone(),
    };
    writeln!(
        output,
        "Chatting with the flows as customer {who}. /help for commands."
    )?;
    output.flush()?;
    let mut choices = Choices::default();
    for line in input.lines() {
        let line = line?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        } else if line == "/quit" || line == "/exit" {
            break;
        } else if line == "/help" {
            writeln!(output, "{HELP}")?;
        } else if line == "/session" {
            writeln!(output, "     {}", session.where_now().await)?;
        } else if line == "/image" {
            session
                .say(json!({
                    "type": "image",
                    "image": { "id": "100000000000002", "mime_type": "image/jpeg",
                               "sha256": "0000000000000000000000000000000000000000000000000000000000000000" },
                }))
                .await?;
            session.answers(&mut output, &mut choices).await?;
        } else if let Some(d) = line.strip_prefix("/wait") {
            match humantime::parse_duration(d.trim()) {
                Ok(d) => {
                    writeln!(output, "     ({} later)", humantime::format_duration(d))?;
                    session
                        .clock
                        .advance(i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2));
                    // Timers come due now: the workers look at once (an
                    // idle lane otherwise sweeps only once a second).
                    session.app_state.wake.inbox.sweep_soon();
                    session.app_state.wake.outbox.sweep_soon();
                    session.answers(&mut output, &mut choices).await?;
                }
                Err(_) => writeln!(output, "     (/wait takes a duration like 30s, 10m, 2h)")?,
            }
        } else if line.starts_with('/') {
            writeln!(output, "     (unknown command; /help lists them)")?;
        } else {
            session.say(message_of(line, &choices)).await?;
            session.answers(&mut output, &mut choices).await?;
        }
        output.flush()?;
    }
    Ok(())
}
