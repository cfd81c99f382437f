//! The benchmark's baselines (`scripts/bench`): the least a webhook
//! receiver, and a reply bot, can do and still be correct. whatsify's
//! figures are read as ratios to these.
//!
//! Ingress (the default): verify Meta's signature (HMAC-SHA256 of the raw
//! body, constant-time), write the body as one Redis stream entry, answer
//! 200. No parsing, no de-duplication, no encryption, no flows.
//!
//! Reply (`--reply GRAPH_BASE`, issue 22's minimal reply bot): the handler
//! verifies the signature, de-duplicates on the message id (`SET NX`) and
//! appends the body to a stream (`XADD`), then answers 200; one task reads
//! the stream (`XREAD BLOCK`), posts one text reply per message to
//! `{GRAPH_BASE}/{phone_number_id}/messages` with the access token (one
//! request at a time) and deletes what it answered (`XDEL`). No
//! encryption, no flows, no read receipts, no retries.
//!
//! ```text
//! WHATSIFY__META__APP_SECRET=… cargo run --release --example baseline -- 127.0.0.1:18081 redis://127.0.0.1:6391/0
//! WHATSIFY__META__APP_SECRET=… WHATSIFY__META__ACCESS_TOKEN=… cargo run --release --example baseline -- \
//!     127.0.0.1:18082 redis://127.0.0.1:6391/0 --reply http://127.0.0.1:18099/v23.0
//! ```

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The text the reply bot answers every message with (`scripts/bench`
/// gives whatsify's flow the same text and tells the load generator).
const REPLY_TEXT: &str = "Thanks, we got your message.";
/// The reply bot's stream and de-duplication keys.
const REPLY_STREAM: &str = "baseline:replies";
const SEEN_PREFIX: &str = "baseline:seen:";

struct State {
    secret: Vec<u8>,
    redis: redis::aio::ConnectionManager,
    reply: bool,
}

fn signature_ok(req: &HttpRequest, body: &[u8], secret: &[u8]) -> bool {
    let tag = req
        .headers()
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|h| hex::decode(h).ok());
    let Some(tag) = tag else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

async fn webhook(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    if !signature_ok(&req, &body, &state.secret) {
        return HttpResponse::Unauthorized().finish();
    }
    let mut conn = state.redis.clone();
    if state.reply {
        return match dedupe_and_append(&body, &mut conn).await {
            Ok(()) => HttpResponse::Ok().body("EVENT_RECEIVED"),
            Err(_) => HttpResponse::ServiceUnavailable().finish(),
        };
    }
    let stored: Result<String, _> = redis::cmd("XADD")
        .arg("baseline:inbox")
        .arg("*")
        .arg("e")
        .arg(&body[..])
        .query_async(&mut conn)
        .await;
    match stored {
        Ok(_) => HttpResponse::Ok().body("EVENT_RECEIVED"),
        Err(_) => HttpResponse::ServiceUnavailable().finish(),
    }
}

/// The message ids of a delivery (status-only deliveries have none).
fn message_ids(v: &serde_json::Value) -> Vec<&str> {
    changes(v)
        .flat_map(|c| c["messages"].as_array().into_iter().flatten())
        .filter_map(|m| m["id"].as_str())
        .collect()
}

fn changes(v: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    v["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["changes"].as_array().into_iter().flatten())
        .map(|c| &c["value"])
}

/// `SET NX` of each message id (kept a day), then `XADD` of the body
/// unless every message in it was seen before.
async fn dedupe_and_append(
    body: &[u8],
    conn: &mut redis::aio::ConnectionManager,
) -> redis::RedisResult<()> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Ok(());
    };
    let mut fresh = false;
    for id in message_ids(&v) {
        let set: Option<String> = redis::cmd("SET")
            .arg(format!("{SEEN_PREFIX}{id}"))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(86_400)
            .query_async(conn)
            .await?;
        fresh |= set.is_some();
    }
    if fresh {
        let _: String = redis::cmd("XADD")
            .arg(REPLY_STREAM)
            .arg("*")
            .arg("e")
            .arg(body)
            .query_async(conn)
            .await?;
    }
    Ok(())
}

/// The entries of an `XREAD` answer: (id, body).
fn stream_entries(reply: redis::Value) -> Vec<(String, Vec<u8>)> {
    use redis::Value;
    let mut out = Vec::new();
    let Value::Array(streams) = reply else {
        return out;
    };
    for stream in streams {
        let Value::Array(mut parts) = stream else {
            continue;
        };
        let Some(Value::Array(entries)) = parts.pop() else {
            continue;
        };
        for entry in entries {
            let Value::Array(mut entry) = entry else {
                continue;
            };
            let fields = entry.pop();
            let Some(Value::BulkString(id)) = entry.pop() else {
                continue;
            };
            let Some(Value::Array(fields)) = fields else {
                continue;
            };
            if let Some(Value::BulkString(body)) = fields.into_iter().nth(1) {
                out.push((String::from_utf8_lossy(&id).into_owned(), body));
            }
        }
    }
    out
}

/// The reply bot's one worker: read the stream, answer every message with
/// one text, delete what was read.
async fn reply_worker(mut conn: redis::aio::MultiplexedConnection, graph: String, token: String) {
    let http = reqwest::Client::new();
    let mut last = "0-0".to_owned();
    loop {
        // BLOCK stays under the connection's 500 ms response timeout.
        let read: redis::RedisResult<redis::Value> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(256)
            .arg("BLOCK")
            .arg(200)
            .arg("STREAMS")
            .arg(REPLY_STREAM)
            .arg(&last)
            .query_async(&mut conn)
            .await;
        let entries = match read {
            Ok(v) => stream_entries(v),
            Err(e) => {
                eprintln!("XREAD: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        if entries.is_empty() {
            continue;
        }
        for (_, body) in &entries {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
                continue;
            };
            for value in changes(&v) {
                let Some(phone_number_id) = value["metadata"]["phone_number_id"].as_str() else {
                    continue;
                };
                for m in value["messages"].as_array().into_iter().flatten() {
                    let Some(to) = m["from"].as_str() else {
                        continue;
                    };
                    let reply = serde_json::json!({
                        "messaging_product": "whatsapp",
                        "to": to,
                        "type": "text",
                        "text": {"body": REPLY_TEXT},
                    });
                    let sent = http
                        .post(format!("{graph}/{phone_number_id}/messages"))
                        .bearer_auth(&token)
                        .json(&reply)
                        .send()
                        .await;
                    match sent {
                        Ok(r) => {
                            let _ = r.bytes().await;
                        }
                        Err(e) => eprintln!("reply: {e}"),
                    }
                }
            }
        }
        let ids: Vec<&str> = entries.iter().map(|(id, _)| id.as_str()).collect();
        if let Some(id) = ids.last() {
            last = (*id).to_owned();
        }
        let deleted: redis::RedisResult<i64> = redis::cmd("XDEL")
            .arg(REPLY_STREAM)
            .arg(&ids)
            .query_async(&mut conn)
            .await;
        if let Err(e) = deleted {
            eprintln!("XDEL: {e}");
        }
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let bind = args.next().unwrap_or_else(|| "127.0.0.1:18081".into());
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
    let graph = match (args.next().as_deref(), args.next()) {
        (Some("--reply"), Some(base)) => Some(base),
        (None, None) => None,
        _ => panic!("usage: baseline [ADDR [REDIS_URL [--reply GRAPH_BASE]]]"),
    };
    let secret = std::env::var("WHATSIFY__META__APP_SECRET")
        .expect("WHATSIFY__META__APP_SECRET")
        .into_bytes();
    let client = redis::Client::open(url).expect("redis url");
    let redis = redis::aio::ConnectionManager::new(client.clone())
        .await
        .expect("redis");
    if let Some(graph) = &graph {
        let token =
            std::env::var("WHATSIFY__META__ACCESS_TOKEN").expect("WHATSIFY__META__ACCESS_TOKEN");
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        tokio::spawn(reply_worker(
            conn,
            graph.trim_end_matches('/').to_owned(),
            token,
        ));
    }
    let state = web::Data::new(State {
        secret,
        redis,
        reply: graph.is_some(),
    });
    HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(4 * 1024 * 1024))
            .route("/webhook", web::post().to(webhook))
    })
    .bind(bind)?
    .run()
    .await
}
