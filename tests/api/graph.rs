//! A fake of Meta's Graph API messages endpoint, following Meta's
//! documented request and response bodies and error envelope: it checks
//! the bearer token and the body, records what was sent, and answers like
//! `POST /{phone_number_id}/messages` does.

use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use crate::helpers::ACCESS_TOKEN;

/// One request the fake accepted.
#[derive(Debug, Clone)]
pub struct Sent {
    pub phone_number_id: String,
    pub body: Value,
}

/// One request the fake received, whatever it answered.
#[derive(Debug, Clone)]
pub struct Request {
    pub at: std::time::Instant,
    pub phone_number_id: String,
    /// `biz_opaque_callback_data` (our job id), when present.
    pub job: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
}

#[derive(Default)]
struct State {
    sent: Vec<Sent>,
    /// Messages marked as read (their wamids), in order.
    reads: Vec<String>,
    /// Every request, in order.
    requests: Vec<Request>,
    /// Error codes to answer with, one per request, before succeeding.
    failures: Vec<(u16, i64)>,
    /// While set, every request fails with this (HTTP status, Meta code).
    failing: Option<(u16, i64)>,
    /// Answer each request only after this long.
    delay: Option<std::time::Duration>,
}

#[derive(Clone)]
pub struct FakeGraph {
    pub base: String,
    state: Arc<Mutex<State>>,
    handle: actix_web::dev::ServerHandle,
}

fn error(status: u16, code: i64, message: &str) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
    )
    .json(json!({
        "error": {
            "message": format!("({code}) {message}"),
            "type": "OAuthException",
            "code": code,
            "error_data": { "messaging_product": "whatsapp", "details": message },
            "fbtrace_id": "AbCdEfGhIjK"
        }
    }))
}

async fn messages(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Json<Value>,
    state: web::Data<Arc<Mutex<State>>>,
) -> HttpResponse {
    let arrived = std::time::Instant::now();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let body = body.into_inner();
    let number = path.into_inner().1;
    let delay = state.lock().unwrap_or_else(|p| p.into_inner()).delay;
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let answer = if auth != Some(&format!("Bearer {ACCESS_TOKEN}")) {
        error(401, 190, "Invalid OAuth access token")
    } else {
        answer(&number, &body, &state)
    };
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    st.requests.push(Request {
        at: arrived,
        phone_number_id: number,
        job: body["biz_opaque_callback_data"].as_str().map(str::to_owned),
        status: answer.status().as_u16(),
    });
    answer
}

fn answer(number: &str, body: &Value, state: &Arc<Mutex<State>>) -> HttpResponse {
    if let Some((status, code)) = state.lock().unwrap_or_else(|p| p.into_inner()).failing {
        return error(status, code, "scripted failure");
    }
    // Mark as read: {"messaging_product","status":"read","message_id"}.
    if body["status"] == "read" {
        let Some(id) = body["message_id"].as_str() else {
            return error(400, 100, "Invalid parameter");
        };
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        st.reads.push(id.to_owned());
        return HttpResponse::Ok().json(json!({ "success": true }));
    }
    let to = body["to"].as_str().or(body["recipient"].as_str());
    let kind = body["type"].as_str().unwrap_or("");
    if body["messaging_product"] != "whatsapp" || to.is_none() || body.get(kind).is_none() {
        return error(400, 100, "Invalid parameter");
    }
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    if !st.failures.is_empty() {
        let (status, code) = st.failures.remove(0);
        return error(status, code, "scripted failure");
    }
    let n = st.sent.len();
    st.sent.push(Sent {
        phone_number_id: number.to_owned(),
        body: body.clone(),
    });
    let input = to.unwrap_or_default().to_owned();
    HttpResponse::Ok().json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": input, "wa_id": input.trim_start_matches('+') }],
        "messages": [{ "id": format!("wamid.FAKE{n:08}") }]
    }))
}

impl FakeGraph {
    pub async fn start() -> FakeGraph {
        let state = Arc::new(Mutex::new(State::default()));
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new().app_data(data.clone()).route(
                "/{version}/{phone_number_id}/messages",
                web::post().to(messages),
            )
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .expect("bind");
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        FakeGraph {
            base: format!("http://127.0.0.1:{port}/v23.0"),
            state,
            handle,
        }
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sent
            .clone()
    }

    /// The wamids marked as read, in order.
    pub fn reads(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reads
            .clone()
    }

    /// Every request received (answered with success or not), in order.
    pub fn requests(&self) -> Vec<Request> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .requests
            .clone()
    }

    /// From now on every request fails with (HTTP status, Meta code);
    /// `None` answers normally again.
    pub fn fail_all(&self, failure: Option<(u16, i64)>) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).failing = failure;
    }

    /// Answers each request only after `delay`.
    pub fn set_delay(&self, delay: Option<std::time::Duration>) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).delay = delay;
    }

    /// The next requests fail with these (HTTP status, Meta code).
    pub fn fail_next(&self, failures: &[(u16, i64)]) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .failures
            .extend_from_slice(failures);
    }

    /// Waits (bounded) until at least `n` messages were accepted.
    pub async fn wait_for(&self, n: usize) -> Vec<Sent> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let sent = self.sent();
            if sent.len() >= n || std::time::Instant::now() > deadline {
                return sent;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

/// A sent message in the one-line form transcripts use.
pub fn describe(body: &Value) -> String {
    match body["type"].as_str().unwrap_or("") {
        "text" => format!("text: {}", body["text"]["body"].as_str().unwrap_or("")),
        "interactive" => {
            let i = &body["interactive"];
            let text = i["body"]["text"].as_str().unwrap_or("");
            if i["type"] == "button" {
                let titles: Vec<&str> = i["action"]["buttons"]
                    .as_array()
                    .map(|b| {
                        b.iter()
                            .filter_map(|b| b["reply"]["title"].as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                format!("buttons: {text} [{}]", titles.join(" | "))
            } else {
                let rows: Vec<String> = i["action"]["sections"]
                    .as_array()
                    .map(|s| {
                        s.iter()
                            .flat_map(|s| s["rows"].as_array().cloned().unwrap_or_default())
                            .filter_map(|r| r["title"].as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                format!(
                    "list: {text} ({}) [{}]",
                    i["action"]["button"].as_str().unwrap_or(""),
                    rows.join(" | ")
                )
            }
        }
        other => format!("{other}: {}", body[other]),
    }
}
