//! From [`RawSettings`] to [`Settings`]: every secret present and long
//! enough, every value in range, and the errors naming the key and its
//! environment variable.

use std::path::PathBuf;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

use super::integrations::RawIntegrations;
use super::*;

fn secret(key: &'static str, value: SecretString, min: usize) -> Result<SecretString, ConfigError> {
    let text = value.expose_secret();
    if text.is_empty() {
        return Err(ConfigError::Missing {
            key,
            env: env_var(key),
        });
    }
    let chars = text.chars().count();
    if chars < min {
        return Err(ConfigError::Weak {
            key,
            env: env_var(key),
            problem: format!("{chars} characters, at least {min} needed"),
        });
    }
    Ok(value)
}

fn optional_secret(
    key: &'static str,
    value: SecretString,
    min: usize,
) -> Result<Option<SecretString>, ConfigError> {
    if value.expose_secret().is_empty() {
        Ok(None)
    } else {
        secret(key, value, min).map(Some)
    }
}

fn key32(key: &'static str, value: &SecretString) -> Result<Option<Key32>, ConfigError> {
    let text = value.expose_secret().trim();
    if text.is_empty() {
        return Ok(None);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| ConfigError::Invalid {
            key,
            env: env_var(key),
            problem: "not valid base64 (make one with `openssl rand -base64 32`)".into(),
        })?;
    let bytes: [u8; 32] = decoded.try_into().map_err(|v: Vec<u8>| ConfigError::Weak {
        key,
        env: env_var(key),
        problem: format!("{} bytes, exactly 32 needed", v.len()),
    })?;
    Ok(Some(Key32::new(bytes)))
}

/// `meta.graph_api_base`, without a trailing `/`: https, or plain http
/// only to this machine (the access token is sent there).
fn graph_api_base(value: &str) -> Result<String, ConfigError> {
    let base = value.trim_end_matches('/');
    transport::secure_url(base).map_err(|problem| ConfigError::Invalid {
        key: "meta.graph_api_base",
        env: env_var("meta.graph_api_base"),
        problem,
    })?;
    Ok(base.to_owned())
}

/// `store.redis_ca_file`: empty is none; set, every node of
/// `store.redis_url` must be `rediss://` (a CA for a plain connection would
/// silently protect nothing).
fn redis_ca_file(url: &SecretString, file: PathBuf) -> Result<Option<PathBuf>, ConfigError> {
    if file.as_os_str().is_empty() {
        return Ok(None);
    }
    let all_tls = url
        .expose_secret()
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .all(|u| u.starts_with("rediss://"));
    if !all_tls {
        return Err(ConfigError::Invalid {
            key: "store.redis_ca_file",
            env: env_var("store.redis_ca_file"),
            problem: "is set, so store.redis_url must use rediss:// (TLS) for every node".into(),
        });
    }
    Ok(Some(file))
}

impl RawSettings {
    /// Checks every key and builds the typed settings.
    pub fn validate(
        self,
        business_env: &std::collections::BTreeMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        let several = !self.businesses.is_empty();
        let meta = meta(self.meta, several)?;
        let privacy = privacy(self.privacy)?;
        let businesses = if several {
            super::businesses::check(self.businesses, business_env, &privacy)?
        } else {
            vec![super::businesses::implicit(
                &meta,
                &self.flows.dir,
                &privacy,
                &self.business,
            )]
        };
        let backend = backend(&self.store.backend)?;
        check_limits(&self.store, &self.server, &self.outbox)?;
        let integrations = receivers(self.integrations)?;
        for (index, hook) in integrations.iter().enumerate() {
            if let Some(b) = &hook.business
                && !businesses.iter().any(|known| known.id.as_str() == b)
            {
                return Err(ConfigError::Webhook {
                    index,
                    name: hook.name.clone(),
                    problem: format!("business \"{b}\" is not one of [[businesses]]"),
                });
            }
        }
        Ok(Settings {
            server: self.server,
            meta,
            store: StoreSettings {
                backend,
                path: self.store.path,
                redis_ca_file: redis_ca_file(&self.store.redis_url, self.store.redis_ca_file)?,
                redis_url: self.store.redis_url,
                key_prefix: self.store.key_prefix,
            },
            flows: self.flows,
            outbox: self.outbox,
            privacy,
            business: self.business,
            admin: AdminSettings {
                token: optional_secret("admin.token", self.admin.token, MIN_ADMIN_TOKEN_CHARS)?,
            },
            log: self.log,
            console: self.console,
            businesses,
            integrations,
            config_file: None,
        })
    }
}

/// `[meta]`: the app secrets and tokens, present and long enough (the
/// access token may be left out when every business has its own).
fn meta(raw: RawMeta, several: bool) -> Result<MetaSettings, ConfigError> {
    let access_token = if several {
        optional_secret("meta.access_token", raw.access_token, MIN_SECRET_CHARS)?
            .unwrap_or_else(|| SecretString::from(""))
    } else {
        secret("meta.access_token", raw.access_token, MIN_SECRET_CHARS)?
    };
    Ok(MetaSettings {
        app_secret: secret("meta.app_secret", raw.app_secret, MIN_SECRET_CHARS)?,
        app_secret_previous: optional_secret(
            "meta.app_secret_previous",
            raw.app_secret_previous,
            MIN_SECRET_CHARS,
        )?,
        verify_token: secret("meta.verify_token", raw.verify_token, MIN_SECRET_CHARS)?,
        access_token,
        graph_api_base: graph_api_base(&raw.graph_api_base)?,
        phone_number_id: Some(raw.phone_number_id).filter(|s| !s.is_empty()),
    })
}

/// `[privacy]`: the master keys (current and previous) and the pseudonym key.
fn privacy(raw: RawPrivacy) -> Result<PrivacySettings, ConfigError> {
    let master_key = key32("privacy.master_key", &raw.master_key)?;
    let mut master_key_previous = Vec::new();
    for k in key_list(raw.master_key_previous.expose_secret()) {
        if let Some(k) = key32("privacy.master_key_previous", &SecretString::from(k))? {
            master_key_previous.push(k);
        }
    }
    if master_key.is_none() && !master_key_previous.is_empty() {
        return Err(ConfigError::Missing {
            key: "privacy.master_key",
            env: env_var("privacy.master_key"),
        });
    }
    Ok(PrivacySettings {
        master_key,
        master_key_previous,
        pseudonym_key: key32("privacy.pseudonym_key", &raw.pseudonym_key)?,
        policy_version: raw.policy_version,
        policy_notice: raw.policy_notice,
        privacy_notice: raw.privacy_notice,
        policy_url: policy_url(raw.policy_url)?,
        retention_days: raw.retention_days,
        erase_confirm_minutes: raw.erase_confirm_minutes,
        request_deadline_days: deadline_days(raw.request_deadline_days)?,
    })
}

/// `privacy.request_deadline_days`: 1 to 90.
fn deadline_days(days: u32) -> Result<u32, ConfigError> {
    match deadline_problem(days) {
        None => Ok(days),
        Some(problem) => Err(ConfigError::Invalid {
            key: "privacy.request_deadline_days",
            env: env_var("privacy.request_deadline_days"),
            problem,
        }),
    }
}

/// What is wrong with a privacy desk deadline of `days`, if anything.
pub fn deadline_problem(days: u32) -> Option<String> {
    let max = crate::domain::desk::MAX_DEADLINE_DAYS;
    (!(1..=max).contains(&days)).then(|| {
        format!("must be 1 to {max} days (the law allows one month, extended by two at most); {days} given")
    })
}

/// `privacy.policy_url`: empty, or a web address.
fn policy_url(raw: String) -> Result<String, ConfigError> {
    let url = raw.trim().to_owned();
    match url_problem(&url) {
        None => Ok(url),
        Some(problem) => Err(ConfigError::Invalid {
            key: "privacy.policy_url",
            env: env_var("privacy.policy_url"),
            problem,
        }),
    }
}

/// What is wrong with a privacy policy's address, if anything: it must be
/// empty or an `https://` (or `http://`) address without spaces, as the
/// customer will tap it.
pub(super) fn url_problem(url: &str) -> Option<String> {
    let web = url.starts_with("https://") || url.starts_with("http://");
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    if url.is_empty() || (web && !rest.is_empty() && !url.contains(char::is_whitespace)) {
        None
    } else {
        Some("must be an https:// address without spaces".to_owned())
    }
}

/// `store.backend`.
fn backend(name: &str) -> Result<Backend, ConfigError> {
    Ok(match name {
        "embedded" => Backend::Embedded,
        "redis" => Backend::Redis,
        "redis-cluster" => Backend::RedisCluster,
        other => {
            return Err(ConfigError::Invalid {
                key: "store.backend",
                env: env_var("store.backend"),
                problem: format!("{other:?} is not \"embedded\", \"redis\" or \"redis-cluster\""),
            });
        }
    })
}

/// The bounds of the store, server and outbox settings.
fn check_limits(
    store: &RawStore,
    server: &ServerSettings,
    outbox: &OutboxSettings,
) -> Result<(), ConfigError> {
    if store.key_prefix.contains(['{', '}']) {
        return Err(ConfigError::Invalid {
            key: "store.key_prefix",
            env: env_var("store.key_prefix"),
            problem: "must not contain { or } (they would break Redis Cluster hash tags)".into(),
        });
    }
    if server.max_body_bytes < 1024 {
        return Err(ConfigError::Invalid {
            key: "server.max_body_bytes",
            env: env_var("server.max_body_bytes"),
            problem: "must be at least 1024 (Meta sends up to about 3 MB)".into(),
        });
    }
    for (key, value) in [
        ("outbox.messages_per_second", outbox.messages_per_second),
        ("outbox.max_attempts", outbox.max_attempts),
        ("outbox.pair_burst", outbox.pair_burst),
    ] {
        if value == 0 {
            return Err(ConfigError::Invalid {
                key,
                env: env_var(key),
                problem: "must be at least 1".into(),
            });
        }
    }
    if outbox.request_timeout < Duration::from_secs(1) || outbox.request_timeout > GRAPH_TIMEOUT_MAX
    {
        return Err(ConfigError::Invalid {
            key: "outbox.request_timeout",
            env: env_var("outbox.request_timeout"),
            problem: "must be 1s to 30s".into(),
        });
    }
    if outbox.retry_base.is_zero() || outbox.retry_cap < outbox.retry_base {
        return Err(ConfigError::Invalid {
            key: "outbox.retry_cap",
            env: env_var("outbox.retry_cap"),
            problem: "outbox.retry_base must be above zero and outbox.retry_cap at least as long"
                .into(),
        });
    }
    Ok(())
}

/// `[[integrations.webhooks]]`, each checked, no two of one name.
fn receivers(
    raw: RawIntegrations,
) -> Result<Vec<std::sync::Arc<crate::config::integrations::Subscriber>>, ConfigError> {
    let mut integrations = Vec::new();
    for (index, raw) in raw.webhooks.into_iter().enumerate() {
        let hook = raw.validate(index)?;
        if integrations
            .iter()
            .any(|h: &std::sync::Arc<crate::config::integrations::Subscriber>| h.name == hook.name)
        {
            return Err(ConfigError::Webhook {
                index,
                name: hook.name.clone(),
                problem: "another receiver has this name".into(),
            });
        }
        integrations.push(hook);
    }
    Ok(integrations)
}
