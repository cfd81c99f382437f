//! `[console]`: how the operator console's session cookie is sent.

use serde::Deserialize;

/// `[console]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSettings {
    /// Whether the session cookie is always `Secure` (and every answer
    /// carries `Strict-Transport-Security`). Unset: on, unless
    /// `server.bind` is a loopback address (a laptop, or a proxy on the
    /// same machine that says `X-Forwarded-Proto: https`).
    #[serde(default)]
    pub secure_cookie: Option<bool>,
    /// The address operators open the console at (`https://console.example.org`):
    /// enrolment links are printed under it. Unset: links are printed as a
    /// path on this server.
    #[serde(default)]
    pub public_url: Option<String>,
}

impl ConsoleSettings {
    /// [`ConsoleSettings::secure_cookie`], or its default for `bind`.
    pub fn secure_cookie_for(&self, bind: &str) -> bool {
        self.secure_cookie.unwrap_or_else(|| !loopback(bind))
    }
}

/// Whether `bind` (`host:port`) listens on this machine only.
fn loopback(bind: &str) -> bool {
    if let Ok(addr) = bind.parse::<std::net::SocketAddr>() {
        return addr.ip().is_loopback();
    }
    let host = bind.rsplit_once(':').map_or(bind, |(h, _)| h);
    host.eq_ignore_ascii_case("localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secure_cookie_is_on_unless_bound_to_loopback_or_set() {
        let unset = ConsoleSettings::default();
        for bind in [
            "0.0.0.0:8080",
            "[::]:8080",
            "10.0.0.5:80",
            "example.org:443",
        ] {
            assert!(unset.secure_cookie_for(bind), "{bind}");
        }
        for bind in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost:8080",
            "127.0.0.1:0",
        ] {
            assert!(!unset.secure_cookie_for(bind), "{bind}");
        }
        let off = ConsoleSettings {
            secure_cookie: Some(false),
            public_url: None,
        };
        assert!(!off.secure_cookie_for("0.0.0.0:8080"));
    }
}
