use crate::helpers::{VERIFY_TOKEN, embedded, spawn_app};

#[tokio::test]
async fn the_right_token_gets_exactly_the_challenge_back_as_plain_text() {
    let b = embedded();
    let app = spawn_app(&b.backend).await;
    let resp = app
        .get(&format!(
            "/webhook?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={VERIFY_TOKEN}"
        ))
        .await;
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(ct.starts_with("text/plain"), "{ct}");
    assert_eq!(resp.text().await.expect("body"), "1158201444");
}

#[tokio::test]
async fn a_challenge_that_is_not_a_number_is_echoed_verbatim() {
    let b = embedded();
    let app = spawn_app(&b.backend).await;
    let resp = app
        .get(&format!(
            "/webhook?hub.verify_token={VERIFY_TOKEN}&hub.challenge=abc-XYZ_09&hub.mode=subscribe"
        ))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.expect("body"), "abc-XYZ_09");
}

#[tokio::test]
async fn anything_else_is_forbidden_and_echoes_nothing() {
    let b = embedded();
    let app = spawn_app(&b.backend).await;
    let cases = [
        "/webhook?hub.mode=subscribe&hub.challenge=CHALLENGE42&hub.verify_token=wrong-token-000000"
            .to_owned(),
        format!(
            "/webhook?hub.mode=subscribe&hub.challenge=CHALLENGE42&hub.verify_token={VERIFY_TOKEN}x"
        ),
        format!(
            "/webhook?hub.mode=subscribe&hub.challenge=CHALLENGE42&hub.verify_token={}",
            &VERIFY_TOKEN[..10]
        ),
        format!(
            "/webhook?hub.mode=unsubscribe&hub.challenge=CHALLENGE42&hub.verify_token={VERIFY_TOKEN}"
        ),
        format!("/webhook?hub.challenge=CHALLENGE42&hub.verify_token={VERIFY_TOKEN}"),
        "/webhook?hub.mode=subscribe&hub.challenge=CHALLENGE42".to_owned(),
        format!("/webhook?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}"),
        "/webhook".to_owned(),
        "/webhook?%zz=1&hub.challenge=CHALLENGE42".to_owned(),
    ];
    for path in cases {
        let resp = app.get(&path).await;
        assert_eq!(resp.status(), 403, "{path}");
        assert!(
            !resp.text().await.expect("body").contains("CHALLENGE42"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let b = embedded();
    let app = spawn_app(&b.backend).await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
    let resp = app.get("/healthz").await;
    assert!(resp.headers().contains_key("x-request-id"));
}
