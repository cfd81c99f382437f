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

#[derive(Default)]
struct State {
    sent: Vec<Sent>,
    /// Error codes to answer with, one per request, before succeeding.
    failures: Vec<(u16, i64)>,
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
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {ACCESS_TOKEN}")) {
        return error(401, 190, "Invalid OAuth access token");
    }
    let body = body.into_inner();
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
        phone_number_id: path.into_inner().1,
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
