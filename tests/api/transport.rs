//! Where the access token may go: the Graph client follows no redirect
//! (a 3xx is retried, then dead-lettered with its status, and the place it
//! points at never hears from us).

use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

use crate::helpers::spawn_app_running;
use crate::outbox::{say_hi, until};

/// What one fake server received: (path, Authorization header).
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A server that records every request and answers each with `answer`.
async fn recorder(
    answer: impl Fn(&HttpRequest) -> HttpResponse + Clone + Send + 'static,
) -> (u16, Seen, actix_web::dev::ServerHandle) {
    let seen: Seen = Arc::default();
    let data = web::Data::new(seen.clone());
    let server = HttpServer::new(move || {
        let answer = answer.clone();
        App::new().app_data(data.clone()).default_service(web::to(
            move |req: HttpRequest, _body: web::Bytes, seen: web::Data<Seen>| {
                let auth = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((req.path().to_owned(), auth));
                let resp = answer(&req);
                async move { resp }
            },
        ))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("bind");
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    (port, seen, handle)
}

fn count(seen: &Seen) -> usize {
    seen.lock().unwrap_or_else(|p| p.into_inner()).len()
}

/// The Graph API answers 302 to another host: the reply is retried and
/// dead-lettered as "HTTP 302 (redirect not followed)", and the other
/// host receives nothing (the access token never reaches it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_the_graph_api_is_not_followed() {
    let (elsewhere, elsewhere_seen, elsewhere_handle) =
        recorder(|_| HttpResponse::Ok().json(serde_json::json!({"messages": [{"id": "x"}]}))).await;
    let (graph, graph_seen, graph_handle) = recorder(move |req| {
        HttpResponse::Found()
            .insert_header((
                "Location",
                format!("http://127.0.0.1:{elsewhere}{}", req.path()),
            ))
            .finish()
    })
    .await;
    let b = crate::helpers::embedded();
    let app = spawn_app_running(
        &b.backend,
        &[
            (
                "WHATSIFY__META__GRAPH_API_BASE",
                format!("http://127.0.0.1:{graph}/v23.0"),
            ),
            ("WHATSIFY__OUTBOX__MARK_READ", "false".into()),
            ("WHATSIFY__OUTBOX__RETRY_BASE", "10ms".into()),
            ("WHATSIFY__OUTBOX__RETRY_CAP", "20ms".into()),
            ("WHATSIFY__OUTBOX__MAX_ATTEMPTS", "2".into()),
        ],
        1,
    )
    .await;
    say_hi(&app, "16505554700", "wamid.R1").await;
    until("the replies dead-lettered", 30, async || {
        app.admin_get("/admin/outbox/dead-letters").await.1["dead_letters"]
            .as_array()
            .is_some_and(|l| l.len() == 2)
    })
    .await;
    let body = app.admin_get("/admin/outbox/dead-letters").await.1;
    let letters = body["dead_letters"].as_array().expect("list");
    for l in letters {
        assert_eq!(l["reason"], "HTTP 302 (redirect not followed)", "{body}");
        assert_eq!(l["attempts"], 2, "retried, then recorded: {body}");
    }
    let graph_got = graph_seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(graph_got.len(), 4, "two replies, two attempts each");
    assert!(graph_got.iter().all(|(path, auth)| {
        path.ends_with("/messages")
            && auth.as_deref() == Some(&format!("Bearer {}", crate::helpers::ACCESS_TOKEN))
    }));
    assert_eq!(
        count(&elsewhere_seen),
        0,
        "the redirect's target got nothing"
    );
    app.stop().await;
    graph_handle.stop(false).await;
    elsewhere_handle.stop(false).await;
}
