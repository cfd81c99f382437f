//! Which URLs whatsify may send secrets to: `https://`, or plain `http://`
//! only to this machine (127.0.0.0/8, ::1, `localhost`), where nothing
//! crosses a network. Used for `meta.graph_api_base` (the access token
//! goes there) and the integrations' receivers.

/// True when `url` names this machine: `localhost`, 127.0.0.0/8 or ::1.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    url.host_str().is_some_and(|h| {
        h.eq_ignore_ascii_case("localhost")
            || h.trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

/// Parses `text` as an `https://` URL, or an `http://` one to this
/// machine; otherwise says why not (without quoting the value, which may
/// carry credentials).
pub fn secure_url(text: &str) -> Result<reqwest::Url, String> {
    let url: reqwest::Url = text.parse().map_err(|_| "is not a URL".to_owned())?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(
            "must be https:// (plain http:// only to this machine: 127.0.0.0/8, ::1, localhost)"
                .into(),
        ),
        _ => Err("must be an https:// URL".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_and_http_only_to_this_machine_are_accepted() {
        for ok in [
            "https://graph.facebook.com/v23.0",
            "https://10.0.0.5:8443/v23.0",
            "http://127.0.0.1:9/v23.0",
            "http://127.1.2.3/v23.0",
            "http://[::1]:8080/v23.0",
            "http://localhost:8080/v23.0",
            "http://LOCALHOST/v23.0",
        ] {
            assert!(secure_url(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn plain_http_elsewhere_and_other_schemes_are_refused() {
        for bad in [
            "http://graph.facebook.com/v23.0",
            "http://10.0.0.5/v23.0",
            "http://[::2]/v23.0",
            "http://localhost.example.com/v23.0",
            "http://128.0.0.1/v23.0",
            "ftp://graph.facebook.com/v23.0",
            "graph.facebook.com/v23.0",
            "",
            "file:///etc/passwd",
        ] {
            assert!(secure_url(bad).is_err(), "{bad}");
        }
    }

    fn load_with_base(base: &str) -> Result<crate::config::Settings, crate::config::ConfigError> {
        load_with(&[("WHATSIFY__META__GRAPH_API_BASE", base)])
    }

    fn load_with(
        extra: &[(&str, &str)],
    ) -> Result<crate::config::Settings, crate::config::ConfigError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("empty.toml");
        std::fs::write(&file, "").expect("write");
        let env = [
            ("WHATSIFY__META__APP_SECRET", "app-secret-0123456789"),
            ("WHATSIFY__META__VERIFY_TOKEN", "verify-token-0123456789"),
            ("WHATSIFY__META__ACCESS_TOKEN", "access-token-0123456789"),
            (
                "WHATSIFY__PRIVACY__MASTER_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            ),
        ];
        crate::config::Settings::load_from(
            Some(&file),
            env.iter()
                .chain(extra)
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    #[test]
    fn a_plain_http_graph_api_base_elsewhere_is_a_start_up_error_naming_the_key() {
        let err = load_with_base("http://graph.example.com/v23.0/")
            .expect_err("plain http to another host is refused")
            .to_string();
        assert!(err.contains("meta.graph_api_base"), "{err}");
        assert!(err.contains("WHATSIFY__META__GRAPH_API_BASE"), "{err}");
        assert!(err.contains("https://"), "{err}");
        let err = load_with_base("not a url")
            .expect_err("not a URL")
            .to_string();
        assert!(err.contains("meta.graph_api_base"), "{err}");
    }

    #[test]
    fn the_default_and_a_loopback_graph_api_base_load() {
        let s = load_with_base("https://graph.facebook.com/v23.0/").expect("https loads");
        assert_eq!(s.meta.graph_api_base, "https://graph.facebook.com/v23.0");
        let s = load_with_base("http://127.0.0.1:9/v23.0").expect("loopback loads");
        assert_eq!(s.meta.graph_api_base, "http://127.0.0.1:9/v23.0");
    }

    #[test]
    fn a_redis_ca_file_needs_rediss_urls() {
        let s = load_with(&[]).expect("loads");
        assert_eq!(s.store.redis_ca_file, None);
        let ca = (
            "WHATSIFY__STORE__REDIS_CA_FILE",
            "/etc/whatsify/redis-ca.crt",
        );
        let err = load_with(&[ca, ("WHATSIFY__STORE__REDIS_URL", "redis://10.0.0.1:6379")])
            .expect_err("a CA for a plain connection")
            .to_string();
        assert!(err.contains("store.redis_ca_file"), "{err}");
        assert!(!err.contains("10.0.0.1"), "the URL is a secret: {err}");
        let err = load_with(&[
            ca,
            ("WHATSIFY__STORE__REDIS_URL", "rediss://a:1,redis://b:2"),
        ])
        .expect_err("every node");
        assert!(err.to_string().contains("every node"), "{err}");
        let s = load_with(&[
            ca,
            ("WHATSIFY__STORE__REDIS_URL", "rediss://a:1, rediss://b:2"),
        ])
        .expect("loads");
        assert_eq!(
            s.store.redis_ca_file.as_deref(),
            Some(std::path::Path::new("/etc/whatsify/redis-ca.crt"))
        );
    }
}
