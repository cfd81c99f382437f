//! A fake of Meta's Graph API messages and media endpoints, following
//! Meta's documented request and response bodies and error envelope: it
//! checks the bearer token and the body, records what was sent, and
//! answers like `POST /{phone_number_id}/messages` and `POST
//! /{phone_number_id}/media` (multipart: `messaging_product`, `type`,
//! `file`; answers `{"id": MEDIA_ID}`) do.

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

/// One file uploaded to the media endpoint.
#[derive(Debug, Clone)]
pub struct Upload {
    pub id: String,
    pub phone_number_id: String,
    /// The text fields (`messaging_product`, `type`).
    pub fields: std::collections::HashMap<String, String>,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub file: Vec<u8>,
}

/// One request the fake received, whatever it answered.
#[derive(Debug, Clone)]
pub struct Request {
    pub at: std::time::Instant,
    pub phone_number_id: String,
    /// `biz_opaque_callback_data` (our job id), when present.
    pub job: Option<String>,
    /// The HTTP status answered (0 while it is being answered).
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
    /// Message requests received and not answered yet.
    in_flight: usize,
    /// The next this many message requests are never answered (the
    /// Graph API hanging).
    hang: usize,
    uploads: Vec<Upload>,
    /// Numbers whose requests need another token than `ACCESS_TOKEN` (a
    /// business's own).
    tokens: std::collections::HashMap<String, String>,
}

/// Whether `auth` is the bearer token the number takes (Meta answers 401
/// with code 190 otherwise).
fn authorized(state: &Mutex<State>, number: &str, auth: Option<&str>) -> bool {
    let st = state.lock().unwrap_or_else(|p| p.into_inner());
    let token = st.tokens.get(number).map_or(ACCESS_TOKEN, String::as_str);
    auth == Some(&format!("Bearer {token}"))
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
    state.lock().unwrap_or_else(|p| p.into_inner()).in_flight += 1;
    // Counted down however the handler ends (the client may go away).
    let _in_flight = InFlight(state.get_ref().clone());
    let hang = {
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        let hang = st.hang > 0;
        st.hang = st.hang.saturating_sub(1);
        hang
    };
    if hang {
        // Never answered: the client gives up (and this is dropped).
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    }
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
    // Recorded before it is answered (and the answer recorded in `sent`),
    // so that once a message shows in `sent()` its request shows in
    // `requests()` too; the status is filled in after.
    let index = {
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        st.requests.push(Request {
            at: arrived,
            phone_number_id: number.clone(),
            job: body["biz_opaque_callback_data"].as_str().map(str::to_owned),
            status: 0,
        });
        st.requests.len() - 1
    };
    let answer = if !authorized(&state, &number, auth) {
        error(401, 190, "Invalid OAuth access token")
    } else {
        answer(&number, &body, &state)
    };
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(r) = st.requests.get_mut(index) {
        r.status = answer.status().as_u16();
    }
    answer
}

/// Counts a request down when its handler ends.
struct InFlight(Arc<Mutex<State>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        st.in_flight = st.in_flight.saturating_sub(1);
    }
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

/// The parts of a multipart/form-data body: (headers, content) each.
fn multipart_parts(content_type: &str, body: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let boundary = content_type.split("boundary=").nth(1)?.trim_matches('"');
    let delimiter = format!("--{boundary}");
    let text = body;
    let mut parts = Vec::new();
    let mut rest = text;
    // Skip the preamble up to the first delimiter.
    let first = find(rest, delimiter.as_bytes())?;
    rest = &rest[first + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let end = find(rest, delimiter.as_bytes())?;
        let part = &rest[..end];
        let split = find(part, b"\r\n\r\n")?;
        let headers = String::from_utf8_lossy(&part[..split]).into_owned();
        let mut content = part[split + 4..].to_vec();
        if content.ends_with(b"\r\n") {
            content.truncate(content.len() - 2);
        }
        parts.push((headers, content));
        rest = &rest[end + delimiter.len()..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The value of `key="…"` in a header line.
fn header_param(headers: &str, key: &str) -> Option<String> {
    let start = headers.find(&format!("{key}=\""))? + key.len() + 2;
    let end = headers[start..].find('"')?;
    Some(headers[start..start + end].to_owned())
}

async fn media(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
    state: web::Data<Arc<Mutex<State>>>,
) -> HttpResponse {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let number = path.1.clone();
    if !authorized(&state, &number, auth) {
        return error(401, 190, "Invalid OAuth access token");
    }
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(parts) = multipart_parts(content_type, &body) else {
        return error(400, 100, "Invalid parameter");
    };
    let mut upload = Upload {
        id: String::new(),
        phone_number_id: path.into_inner().1,
        fields: Default::default(),
        filename: None,
        content_type: None,
        file: Vec::new(),
    };
    for (headers, content) in parts {
        let Some(name) = header_param(&headers, "name") else {
            continue;
        };
        if name == "file" {
            upload.filename = header_param(&headers, "filename");
            upload.content_type = headers.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-type:")
                    .map(|v| v.trim().to_owned())
            });
            upload.file = content;
        } else {
            upload
                .fields
                .insert(name, String::from_utf8_lossy(&content).into_owned());
        }
    }
    if upload.fields.get("messaging_product").map(String::as_str) != Some("whatsapp")
        || upload.file.is_empty()
        || !upload.fields.contains_key("type")
    {
        return error(400, 100, "Invalid parameter");
    }
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    upload.id = format!("{}", 900_000_000_000_000u64 + st.uploads.len() as u64);
    let id = upload.id.clone();
    st.uploads.push(upload);
    HttpResponse::Ok().json(json!({ "id": id }))
}

impl FakeGraph {
    /// The files uploaded to the media endpoint, in order.
    pub fn uploads(&self) -> Vec<Upload> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .uploads
            .clone()
    }

    pub async fn start() -> FakeGraph {
        let state = Arc::new(Mutex::new(State::default()));
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .route(
                    "/{version}/{phone_number_id}/messages",
                    web::post().to(messages),
                )
                .route("/{version}/{phone_number_id}/media", web::post().to(media))
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

    /// Requests from `number` need `token` from now on (a business's own
    /// token) instead of the tests' `ACCESS_TOKEN`.
    pub fn expect_token(&self, number: &str, token: &str) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .tokens
            .insert(number.to_owned(), token.to_owned());
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

    /// The next `n` message requests are never answered.
    pub fn hang_next(&self, n: usize) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).hang += n;
    }

    /// Message requests received and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .in_flight
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

    /// Waits (bounded) until at least `n` messages were accepted. The
    /// bound only stops a broken run: it is generous, as a loaded machine
    /// (2 cores, other tests beside) may take a while.
    pub async fn wait_for(&self, n: usize) -> Vec<Sent> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
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

/// The first-contact privacy notice of the tests' business (no
/// `business.name`, no `privacy.policy_url`), as [`describe`] shows it: it
/// comes before the first reply to every new contact.
pub const NOTICE: &str = "text: This is our WhatsApp service. We keep your number and our \
     messages to answer you. Reply PRIVACY to see, correct or delete your data, or STOP to end \
     promotions.";

/// Whether a sent message is a first-contact privacy notice (of any
/// business: the built-in wording says who is writing, then this).
pub fn is_notice(body: &Value) -> bool {
    body["text"]["body"]
        .as_str()
        .is_some_and(|t| t.contains("We keep your number and our messages to answer you."))
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
