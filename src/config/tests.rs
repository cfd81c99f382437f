use super::*;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

#[test]
fn console_secure_cookie_is_read_from_the_environment() {
    let s = Settings::load_from(None, env(&[("WHATSIFY__CONSOLE__SECURE_COOKIE", "true")]))
        .expect("valid");
    assert!(s.console.secure_cookie_for("127.0.0.1:8080"));
}

fn env(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut base = vec![
        ("WHATSIFY__META__APP_SECRET", "app-secret-0123456789"),
        ("WHATSIFY__META__VERIFY_TOKEN", "verify-token-0123456789"),
        ("WHATSIFY__META__ACCESS_TOKEN", "access-token-0123456789"),
        ("WHATSIFY__PRIVACY__MASTER_KEY", KEY),
    ];
    base.extend_from_slice(extra);
    base.into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn load(vars: Vec<(String, String)>) -> Result<Settings, ConfigError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("empty.toml");
    std::fs::write(&file, "").expect("write");
    Settings::load_from(Some(&file), vars)
}

#[test]
fn defaults_with_secrets_from_the_environment_load() {
    let s = load(env(&[])).expect("settings");
    assert_eq!(s.server.bind, "127.0.0.1:8080");
    assert_eq!(s.server.max_body_bytes, 4 * 1024 * 1024);
    assert_eq!(s.store.backend, Backend::Embedded);
    assert_eq!(s.flows.session_ttl, Duration::from_secs(24 * 3600));
    assert_eq!(s.outbox.max_age, Duration::from_secs(4 * 3600));
    assert!(s.admin.token.is_none());
    assert!(s.meta.app_secret_previous.is_none());
    assert_eq!(
        s.privacy.master_key.as_ref().map(|k| k.expose()[1]),
        Some(1)
    );
}

#[test]
fn a_missing_secret_names_the_key_and_its_variable() {
    let vars: Vec<_> = env(&[])
        .into_iter()
        .filter(|(k, _)| k != "WHATSIFY__META__APP_SECRET")
        .collect();
    let err = load(vars).expect_err("must fail").to_string();
    assert!(err.contains("meta.app_secret"), "{err}");
    assert!(err.contains("WHATSIFY__META__APP_SECRET"), "{err}");
}

#[test]
fn a_short_secret_is_refused_without_printing_it() {
    let err = load(env(&[("WHATSIFY__META__VERIFY_TOKEN", "tiny-token")]))
        .expect_err("must fail")
        .to_string();
    assert!(err.contains("WHATSIFY__META__VERIFY_TOKEN"), "{err}");
    assert!(!err.contains("tiny-token"), "{err}");
}

#[test]
fn previous_master_keys_are_a_list_and_need_a_current_one() {
    let list = format!("{KEY}, {KEY}");
    let s = load(env(&[(
        "WHATSIFY__PRIVACY__MASTER_KEY_PREVIOUS",
        list.as_str(),
    )]))
    .expect("settings");
    assert_eq!(s.privacy.master_key_previous.len(), 2);
    let bad = load(env(&[("WHATSIFY__PRIVACY__MASTER_KEY_PREVIOUS", "nope")]))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(bad.contains("privacy.master_key_previous"), "{bad}");
}

#[test]
fn a_master_key_of_the_wrong_length_is_refused() {
    let err = load(env(&[("WHATSIFY__PRIVACY__MASTER_KEY", "AAECAwQ=")]))
        .expect_err("must fail")
        .to_string();
    assert!(
        err.contains("privacy.master_key") && err.contains("32"),
        "{err}"
    );
}

#[test]
fn a_file_overrides_defaults_and_the_environment_overrides_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("w.toml");
    std::fs::write(
            &file,
            "[server]\nbind = \"0.0.0.0:9000\"\n[outbox]\nmax_attempts = 3\n[store]\nbackend = \"redis\"\n",
        )
        .expect("write");
    let s = Settings::load_from(Some(&file), env(&[("WHATSIFY__OUTBOX__MAX_ATTEMPTS", "5")]))
        .expect("settings");
    assert_eq!(s.server.bind, "0.0.0.0:9000");
    assert_eq!(s.outbox.max_attempts, 5);
    assert_eq!(s.store.backend, Backend::Redis);
}

fn with_webhooks(toml: &str) -> Result<Settings, ConfigError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("w.toml");
    std::fs::write(&file, toml).expect("write");
    Settings::load_from(Some(&file), env(&[]))
}

const KEY_B64: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

#[test]
fn webhook_receivers_are_read_and_checked() {
    let s = with_webhooks(&format!(
        "[[integrations.webhooks]]\nname = \"crm\"\nurl = \"https://crm.example/in\"\n\
             secret = \"whsec_{KEY_B64}\"\nevents = [\"contact.created\", \"contact.erased\"]\n\
             fields = [\"name\", \"consent\"]\n\
             [[integrations.webhooks]]\nname = \"desk\"\nurl = \"http://127.0.0.1:9000/h\"\n\
             secret = \"whsec_{KEY_B64}\"\nevents = [\"message.received\"]\n"
    ))
    .expect("settings");
    assert_eq!(s.integrations.len(), 2);
    let crm = &s.integrations[0];
    assert_eq!(crm.name, "crm");
    assert_eq!(
        crm.fields,
        [
            crate::config::integrations::Field::Name,
            crate::config::integrations::Field::Consent
        ]
    );
    assert!(s.integrations[1].fields.is_empty());
    assert!(
        !format!("{s:?}").contains(KEY_B64),
        "the secret never prints"
    );

    let refused = |hook: &str, why: &str| {
        let err = with_webhooks(&format!(
            "[[integrations.webhooks]]\nname = \"crm\"\n{hook}"
        ))
        .expect_err("refused")
        .to_string();
        assert!(err.contains(why), "{why:?} not in {err}");
        assert!(!err.contains(KEY_B64), "{err}");
    };
    let ok_secret = format!("secret = \"whsec_{KEY_B64}\"\n");
    refused(
        &format!("url = \"http://crm.example/in\"\n{ok_secret}events = [\"contact.created\"]\n"),
        "must be https://",
    );
    refused(
        "url = \"https://crm.example/in\"\nsecret = \"s3cret-s3cret-s3cret\"\nevents = [\"contact.created\"]\n",
        "whsec_",
    );
    refused(
        &format!("url = \"https://crm.example/in\"\n{ok_secret}events = [\"contact.deleted\"]\n"),
        "unknown event \"contact.deleted\"",
    );
    refused(
        &format!(
            "url = \"https://crm.example/in\"\n{ok_secret}events = [\"contact.created\"]\nfields = [\"phone\"]\n"
        ),
        "unknown field \"phone\"",
    );
    refused(
        &format!("url = \"https://crm.example/in\"\n{ok_secret}events = []\n"),
        "events is empty",
    );
    let twice = format!(
        "[[integrations.webhooks]]\nname = \"crm\"\nurl = \"https://a.example/\"\n{ok_secret}events = [\"contact.created\"]\n\
             [[integrations.webhooks]]\nname = \"crm\"\nurl = \"https://b.example/\"\n{ok_secret}events = [\"contact.created\"]\n"
    );
    let err = with_webhooks(&twice).expect_err("twice").to_string();
    assert!(
        err.contains("integrations.webhooks[1]") && err.contains("name"),
        "{err}"
    );
}

#[test]
fn the_store_backend_is_one_of_three() {
    let backend = |b: &str| {
        Settings::load_from(None, env(&[("WHATSIFY__STORE__BACKEND", b)])).map(|s| s.store.backend)
    };
    assert_eq!(
        backend("redis-cluster").expect("valid"),
        Backend::RedisCluster
    );
    let err = backend("cluster").expect_err("invalid").to_string();
    assert!(
        err.contains("store.backend") && err.contains("redis-cluster"),
        "{err}"
    );
}

#[test]
fn an_unknown_key_is_an_error_not_silently_ignored() {
    let err = load(env(&[("WHATSIFY__META__APP_SECRTE", "x")]))
        .expect_err("must fail")
        .to_string();
    assert!(err.contains("app_secrte"), "{err}");
}

#[test]
fn secrets_never_print() {
    let s = load(env(&[])).expect("settings");
    let shown = format!("{s:?}");
    assert!(!shown.contains("app-secret-0123456789"));
    assert!(!shown.contains(KEY));
}

#[test]
fn the_privacy_desk_deadline_is_1_to_90_days_and_a_business_may_set_its_own() {
    let s = load(env(&[])).expect("settings");
    assert_eq!(s.privacy.request_deadline_days, 30);
    assert_eq!(s.businesses[0].request_deadline_days, 30);
    let s = load(env(&[("WHATSIFY__PRIVACY__REQUEST_DEADLINE_DAYS", "45")])).expect("45");
    assert_eq!(s.businesses[0].request_deadline_days, 45);
    let e = load(env(&[("WHATSIFY__PRIVACY__REQUEST_DEADLINE_DAYS", "0")])).expect_err("0");
    let e = e.to_string();
    assert!(
        e.contains("privacy.request_deadline_days") && e.contains("1 to 90"),
        "{e}"
    );
    let entry = |days: u32| {
        format!(
            "[[businesses]]\nid = \"cafe\"\nphone_number_ids = [\"2002\"]\n\
             access_token = \"cafe-token-0123456789abcdef\"\nflows_dir = \"flows\"\n\
             request_deadline_days = {days}\n"
        )
    };
    let s = with_webhooks(&entry(60)).expect("60");
    assert_eq!(s.businesses[0].request_deadline_days, 60);
    let e = with_webhooks(&entry(91)).expect_err("91").to_string();
    assert!(
        e.contains("request_deadline_days") && e.contains("1 to 90"),
        "{e}"
    );
}
