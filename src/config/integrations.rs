//! `[[integrations.webhooks]]`: the CRM and helpdesk receivers, checked
//! and turned into subscribers.

use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::Deserialize;

use super::{ConfigError, transport};

/// `[[integrations.webhooks]]`: the CRM and helpdesk receivers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntegrations {
    #[serde(default)]
    pub(super) webhooks: Vec<RawWebhook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    name: String,
    url: String,
    secret: SecretString,
    events: Vec<String>,
    #[serde(default)]
    fields: Vec<String>,
}

impl RawWebhook {
    pub(super) fn validate(
        self,
        index: usize,
    ) -> Result<std::sync::Arc<crate::integrations::Subscriber>, ConfigError> {
        let name = self.name.clone();
        let invalid = |problem: String| ConfigError::Webhook {
            index,
            name: name.clone(),
            problem,
        };
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(invalid(
                "name must be 1 to 64 letters, digits, - or _".into(),
            ));
        }
        let url: reqwest::Url = self
            .url
            .parse()
            .map_err(|_| invalid("url is not a URL".into()))?;
        let loopback = transport::is_loopback(&url);
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return Err(invalid(
                    "url must be https:// (plain http only to this machine)".into(),
                ));
            }
        }
        let key = crate::integrations::signing::key_of(self.secret.expose_secret())
            .map_err(|why| invalid(format!("secret: {why}")))?;
        if self.events.is_empty() {
            return Err(invalid("events is empty: list what it receives".into()));
        }
        let mut events = Vec::new();
        for e in &self.events {
            events.push(e.parse().map_err(invalid)?);
        }
        let mut fields = Vec::new();
        for f in &self.fields {
            fields.push(f.parse().map_err(invalid)?);
        }
        Ok(std::sync::Arc::new(crate::integrations::Subscriber {
            name: self.name,
            url,
            key: SecretBox::new(Box::new(key)),
            events,
            fields,
        }))
    }
}
