//! The benchmark's baseline (`scripts/bench`): the least a webhook
//! receiver can do and still be correct. It verifies Meta's signature
//! (HMAC-SHA256 of the raw body, constant-time) and writes the body as one
//! Redis stream entry, then answers 200. No parsing, no de-duplication, no
//! encryption, no flows: whatsify's figures are read as ratios to these.
//!
//! ```text
//! WHATSIFY__META__APP_SECRET=… cargo run --release --example baseline -- 127.0.0.1:18081 redis://127.0.0.1:6391/0
//! ```

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

struct State {
    secret: Vec<u8>,
    redis: redis::aio::ConnectionManager,
}

async fn webhook(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let tag = req
        .headers()
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|h| hex::decode(h).ok());
    let Some(tag) = tag else {
        return HttpResponse::Unauthorized().finish();
    };
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&state.secret) else {
        return HttpResponse::InternalServerError().finish();
    };
    mac.update(&body);
    if mac.verify_slice(&tag).is_err() {
        return HttpResponse::Unauthorized().finish();
    }
    let mut conn = state.redis.clone();
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

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let bind = args.next().unwrap_or_else(|| "127.0.0.1:18081".into());
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
    let secret = std::env::var("WHATSIFY__META__APP_SECRET")
        .expect("WHATSIFY__META__APP_SECRET")
        .into_bytes();
    let client = redis::Client::open(url).expect("redis url");
    let redis = redis::aio::ConnectionManager::new(client)
        .await
        .expect("redis");
    let state = web::Data::new(State { secret, redis });
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
