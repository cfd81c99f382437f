//! `[[businesses]]`: the client businesses one deployment serves, each
//! with its own numbers, token, flows and policy. Without the section, the
//! `[meta]`, `[flows]`, `[privacy]` and `[business]` settings describe one
//! business, `default`, as earlier releases did.

use std::collections::BTreeMap;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{BusinessSettings, ConfigError, MIN_SECRET_CHARS, MetaSettings, PrivacySettings};
use crate::domain::BusinessId;

/// One `[[businesses]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBusiness {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    phone_number_ids: Vec<String>,
    #[serde(default)]
    access_token: Option<SecretString>,
    #[serde(default)]
    flows_dir: PathBuf,
    #[serde(default)]
    waba_id: String,
    #[serde(default)]
    app_secret: Option<SecretString>,
    #[serde(default)]
    policy_version: String,
    /// The first-contact notice.
    #[serde(default)]
    privacy_notice: String,
    /// The notice of a policy change.
    #[serde(default)]
    policy_notice: String,
    /// The privacy policy's address, linked from the first-contact notice.
    #[serde(default)]
    policy_url: String,
    /// How to reach a person, for the built-in HELP answer.
    #[serde(default)]
    contact: String,
    /// The privacy desk's legal deadline, in days (default:
    /// `privacy.request_deadline_days`).
    #[serde(default)]
    request_deadline_days: Option<u32>,
}

/// A client business, checked.
#[derive(Debug, Clone)]
pub struct Business {
    pub id: BusinessId,
    /// Shown to operators (never in logs or metrics: the id is).
    pub name: String,
    /// The numbers it owns. Empty only for the implicit `default` business
    /// of a deployment without `[[businesses]]`, which takes every number.
    pub phone_number_ids: Vec<String>,
    /// Its Graph API token.
    pub access_token: SecretString,
    pub flows_dir: PathBuf,
    pub waba_id: Option<String>,
    /// Set when the business is on its own Meta app: its webhook is
    /// `/webhook/{id}`, signed with this.
    pub app_secret: Option<SecretString>,
    pub policy_version: String,
    /// Sent before the first reply to each new contact; empty: the
    /// built-in wording, which names the business and links `policy_url`.
    pub privacy_notice: String,
    /// Sent once to each contact who writes in after `policy_version`
    /// changed.
    pub policy_notice: String,
    /// The privacy policy's address (empty: none).
    pub policy_url: String,
    /// How to reach a person ("call +1 555 0100"); empty: reply AGENT.
    pub contact: String,
    /// The privacy desk's legal deadline, in days after a request was
    /// received (`request_deadline_days`, else the `[privacy]` one).
    pub request_deadline_days: u32,
}

/// The environment variable that sets `key` (`access_token` or
/// `app_secret`) of the business `id`: `WHATSIFY_BUSINESS__SHOE_SHOP__ACCESS_TOKEN`.
pub fn business_env_var(id: &str, key: &str) -> String {
    format!(
        "WHATSIFY_BUSINESS__{}__{}",
        id.replace('-', "_").to_uppercase(),
        key.to_uppercase()
    )
}

/// The one business of a deployment without `[[businesses]]`.
pub fn implicit(
    meta: &MetaSettings,
    flows_dir: &std::path::Path,
    privacy: &PrivacySettings,
    business: &BusinessSettings,
) -> Business {
    Business {
        id: BusinessId::default_business(),
        name: business.name.clone(),
        phone_number_ids: Vec::new(),
        access_token: meta.access_token.clone(),
        flows_dir: flows_dir.to_path_buf(),
        waba_id: None,
        app_secret: None,
        policy_version: privacy.policy_version.clone(),
        privacy_notice: privacy.privacy_notice.clone(),
        policy_notice: privacy.policy_notice.clone(),
        policy_url: privacy.policy_url.clone(),
        contact: business.contact.clone(),
        request_deadline_days: privacy.request_deadline_days,
    }
}

/// Checks every `[[businesses]]` entry: ids and numbers unique, secrets
/// present (from the file or the environment) and long enough. The error
/// names the entry and the key.
pub fn check(
    raw: Vec<RawBusiness>,
    env: &BTreeMap<String, String>,
    privacy: &PrivacySettings,
) -> Result<Vec<Business>, ConfigError> {
    let mut out: Vec<Business> = Vec::new();
    for (index, b) in raw.into_iter().enumerate() {
        let entry = |key: &'static str, problem: String| ConfigError::Business {
            index,
            id: b.id.clone(),
            key,
            problem,
        };
        let id = BusinessId::parse(&b.id)
            .ok_or_else(|| entry("id", "must be 1 to 32 characters of a-z, 0-9 and -".into()))?;
        if out.iter().any(|o| o.id == id) {
            return Err(entry("id", "another business has this id".into()));
        }
        if b.phone_number_ids.is_empty() {
            return Err(entry(
                "phone_number_ids",
                "list at least one phone number id".into(),
            ));
        }
        for number in &b.phone_number_ids {
            let digits = !number.is_empty() && number.bytes().all(|c| c.is_ascii_digit());
            if !digits {
                return Err(entry(
                    "phone_number_ids",
                    format!("{number:?} is not a phone number id (digits)"),
                ));
            }
            if let Some(owner) = out.iter().find(|o| o.phone_number_ids.contains(number)) {
                return Err(entry(
                    "phone_number_ids",
                    format!(
                        "{number} belongs to business {:?} already",
                        owner.id.as_str()
                    ),
                ));
            }
        }
        if b.phone_number_ids
            .iter()
            .enumerate()
            .any(|(i, n)| b.phone_number_ids[..i].contains(n))
        {
            return Err(entry("phone_number_ids", "a number is listed twice".into()));
        }
        let secret_of = |key: &'static str, file: Option<SecretString>, required: bool| {
            let var = business_env_var(id.as_str(), key);
            let value = file
                .filter(|s| !s.expose_secret().is_empty())
                .or_else(|| env.get(&var).map(|v| SecretString::from(v.as_str())));
            match value {
                None if required => Err(entry(key, format!("is missing (set it or {var})"))),
                None => Ok(None),
                Some(v) if v.expose_secret().chars().count() < MIN_SECRET_CHARS => Err(entry(
                    key,
                    format!("is too short: at least {MIN_SECRET_CHARS} characters (or {var})"),
                )),
                Some(v) => Ok(Some(v)),
            }
        };
        let access_token = secret_of("access_token", b.access_token.clone(), true)?
            .ok_or_else(|| entry("access_token", "is missing".into()))?;
        let app_secret = secret_of("app_secret", b.app_secret.clone(), false)?;
        if b.flows_dir.as_os_str().is_empty() {
            return Err(entry(
                "flows_dir",
                "name the folder of its flow files".into(),
            ));
        }
        let policy_url = b.policy_url.trim().to_owned();
        if let Some(problem) = super::validate::url_problem(&policy_url) {
            return Err(entry("policy_url", problem));
        }
        let waba_id = Some(b.waba_id.clone()).filter(|w| !w.is_empty());
        if waba_id
            .as_ref()
            .is_some_and(|w| !w.bytes().all(|c| c.is_ascii_digit()))
        {
            return Err(entry("waba_id", "must be digits".into()));
        }
        let request_deadline_days = b
            .request_deadline_days
            .unwrap_or(privacy.request_deadline_days);
        if let Some(problem) = super::validate::deadline_problem(request_deadline_days) {
            return Err(entry("request_deadline_days", problem));
        }
        out.push(Business {
            id,
            name: if b.name.is_empty() {
                b.id.clone()
            } else {
                b.name
            },
            phone_number_ids: b.phone_number_ids,
            access_token,
            flows_dir: b.flows_dir,
            waba_id,
            app_secret,
            policy_version: or_else(b.policy_version, &privacy.policy_version),
            privacy_notice: or_else(b.privacy_notice, &privacy.privacy_notice),
            policy_notice: or_else(b.policy_notice, &privacy.policy_notice),
            policy_url: or_else(policy_url, &privacy.policy_url),
            contact: b.contact,
            request_deadline_days,
        });
    }
    Ok(out)
}

/// `value`, or `fallback` when it is empty.
fn or_else(value: String, fallback: &str) -> String {
    if value.is_empty() {
        fallback.to_owned()
    } else {
        value
    }
}

/// The businesses served, looked up by id and by phone number id.
#[derive(Debug, Clone)]
pub struct Directory {
    list: Vec<Business>,
    by_number: std::collections::HashMap<String, usize>,
}

impl Directory {
    /// `list` as checked by the settings (never empty).
    pub fn new(list: Vec<Business>) -> Directory {
        let by_number = list
            .iter()
            .enumerate()
            .flat_map(|(i, b)| b.phone_number_ids.iter().map(move |n| (n.clone(), i)))
            .collect();
        Directory { list, by_number }
    }

    /// Only the `default` business, owning every number, with no token or
    /// flows of its own: for tools and tests that only route.
    pub fn default_only() -> Directory {
        Directory::new(vec![Business {
            id: BusinessId::default_business(),
            name: String::new(),
            phone_number_ids: Vec::new(),
            access_token: SecretString::from(""),
            flows_dir: PathBuf::new(),
            waba_id: None,
            app_secret: None,
            policy_version: String::new(),
            privacy_notice: String::new(),
            policy_notice: String::new(),
            policy_url: String::new(),
            contact: String::new(),
            request_deadline_days: crate::domain::desk::DEFAULT_DEADLINE_DAYS,
        }])
    }

    /// The privacy desk's legal deadline of the business `id`, in days
    /// (the default for a business not served).
    pub fn deadline_days(&self, id: &BusinessId) -> u32 {
        self.get(id.as_str())
            .map_or(crate::domain::desk::DEFAULT_DEADLINE_DAYS, |b| {
                b.request_deadline_days
            })
    }

    /// The business that owns `phone_number_id`; the implicit `default`
    /// business of a deployment without `[[businesses]]` owns every number.
    pub fn of_number(&self, phone_number_id: &str) -> Option<&Business> {
        match self.by_number.get(phone_number_id) {
            Some(&i) => self.list.get(i),
            None => self.catch_all(),
        }
    }

    /// Only the business `id` (nothing when there is none): what its own
    /// webhook routes to.
    pub fn only_for(&self, id: &BusinessId) -> Directory {
        Directory::new(self.list.iter().filter(|b| b.id == *id).cloned().collect())
    }

    /// The business of this id.
    pub fn get(&self, id: &str) -> Option<&Business> {
        self.list.iter().find(|b| b.id.as_str() == id)
    }

    /// Every business, in the order the settings list them.
    pub fn all(&self) -> &[Business] {
        &self.list
    }

    /// The business when exactly one is served.
    pub fn only(&self) -> Option<&Business> {
        match self.list.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    fn catch_all(&self) -> Option<&Business> {
        self.only().filter(|b| b.phone_number_ids.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, Settings};

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn load(toml: &str, extra: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("whatsify.toml");
        std::fs::write(&file, toml).expect("write");
        let mut env = vec![
            ("WHATSIFY__META__APP_SECRET", "app-secret-0123456789"),
            ("WHATSIFY__META__VERIFY_TOKEN", "verify-token-0123456789"),
            ("WHATSIFY__PRIVACY__MASTER_KEY", KEY),
        ];
        env.extend_from_slice(extra);
        let env = env.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned()));
        Settings::load_from(Some(&file), env)
    }

    fn entry(id: &str, numbers: &str) -> String {
        format!(
            "[[businesses]]\nid = {id:?}\nphone_number_ids = [{numbers}]\n\
             access_token = \"token-of-{id}-0123456789\"\nflows_dir = \"flows\"\n"
        )
    }

    #[test]
    fn without_businesses_the_meta_settings_are_the_default_business() {
        let s = load(
            "",
            &[("WHATSIFY__META__ACCESS_TOKEN", "access-token-0123456789")],
        )
        .expect("settings");
        let [b] = s.businesses.as_slice() else {
            panic!("one business: {:?}", s.businesses);
        };
        assert!(b.id.is_default());
        assert!(b.phone_number_ids.is_empty(), "it takes every number");
        let d = super::Directory::new(s.businesses.clone());
        assert!(d.of_number("106540352242922").is_some());
    }

    #[test]
    fn two_businesses_route_their_own_numbers_only() {
        let toml = format!(
            "{}{}",
            entry("shop", "\"1001\", \"1002\""),
            entry("cafe", "\"2002\"")
        );
        let s = load(&toml, &[]).expect("no meta.access_token needed");
        let d = super::Directory::new(s.businesses);
        assert_eq!(d.of_number("1002").map(|b| b.id.as_str()), Some("shop"));
        assert_eq!(d.of_number("2002").map(|b| b.id.as_str()), Some("cafe"));
        assert!(d.of_number("3003").is_none(), "a number of no business");
        assert!(d.only().is_none());
        assert_eq!(d.get("cafe").map(|b| b.name.as_str()), Some("cafe"));
    }

    #[test]
    fn a_bad_entry_names_the_entry_and_the_key() {
        let cases = [
            (entry("Shop", "\"1\""), "businesses[0] (id \"Shop\"): id"),
            (
                format!("{}{}", entry("shop", "\"1\""), entry("shop", "\"2\"")),
                "businesses[1] (id \"shop\"): id another business has this id",
            ),
            (
                format!("{}{}", entry("shop", "\"1\""), entry("cafe", "\"1\"")),
                "businesses[1] (id \"cafe\"): phone_number_ids 1 belongs to business \"shop\"",
            ),
            (entry("shop", ""), "phone_number_ids list at least one"),
            (entry("shop", "\"+1 650\""), "is not a phone number id"),
            (
                "[[businesses]]\nid = \"shop\"\nphone_number_ids = [\"1\"]\nflows_dir = \"f\"\n"
                    .to_owned(),
                "access_token is missing (set it or WHATSIFY_BUSINESS__SHOP__ACCESS_TOKEN)",
            ),
            (
                format!("{}nonsense = 1\n", entry("shop", "\"1\"")),
                "nonsense",
            ),
        ];
        for (toml, expected) in cases {
            let err = load(&toml, &[]).expect_err(&toml).to_string();
            assert!(err.contains(expected), "{err}\n  expected: {expected}");
            assert!(!err.contains("token-of-"), "a token in the error: {err}");
        }
    }

    #[test]
    fn a_business_s_notices_fall_back_to_the_privacy_settings() {
        let toml = format!(
            "[privacy]\npolicy_notice = \"New policy.\"\npolicy_url = \"https://svc.example/p\"\n\
             {}{}policy_notice = \"Nueva política.\"\nprivacy_notice = \"Hola.\"\n\
             policy_url = \"https://cafe.example/p\"\n",
            entry("shop", "\"1\""),
            entry("cafe", "\"2\"")
        );
        let s = load(&toml, &[]).expect("settings");
        let [shop, cafe] = s.businesses.as_slice() else {
            panic!("two businesses: {:?}", s.businesses);
        };
        assert_eq!(shop.policy_notice, "New policy.");
        assert_eq!(shop.policy_url, "https://svc.example/p");
        assert_eq!(shop.privacy_notice, "", "empty: the built-in wording");
        assert_eq!(
            (cafe.policy_notice.as_str(), cafe.privacy_notice.as_str()),
            ("Nueva política.", "Hola.")
        );
        assert_eq!(cafe.policy_url, "https://cafe.example/p");
    }

    #[test]
    fn a_policy_url_that_is_not_an_address_stops_start_up() {
        let toml = format!(
            "{}policy_url = \"acme.example/privacy\"\n",
            entry("shop", "\"1\"")
        );
        let err = load(&toml, &[]).expect_err("not an address").to_string();
        assert!(
            err.contains("businesses[0] (id \"shop\"): policy_url must be an https://"),
            "{err}"
        );
        let err = load(
            "",
            &[
                ("WHATSIFY__META__ACCESS_TOKEN", "access-token-0123456789"),
                ("WHATSIFY__PRIVACY__POLICY_URL", "https://acme.example/a b"),
            ],
        )
        .expect_err("a space")
        .to_string();
        assert!(err.contains("privacy.policy_url"), "{err}");
        assert!(err.contains("WHATSIFY__PRIVACY__POLICY_URL"), "{err}");
    }

    #[test]
    fn a_business_token_may_come_from_the_environment() {
        let toml =
            "[[businesses]]\nid = \"shoe-shop\"\nphone_number_ids = [\"1\"]\nflows_dir = \"f\"\n";
        let var = super::business_env_var("shoe-shop", "access_token");
        assert_eq!(var, "WHATSIFY_BUSINESS__SHOE_SHOP__ACCESS_TOKEN");
        let s = load(toml, &[(var.as_str(), "from-the-environment-0123")]).expect("settings");
        use secrecy::ExposeSecret;
        assert_eq!(
            s.businesses[0].access_token.expose_secret(),
            "from-the-environment-0123"
        );
        let short = load(toml, &[(var.as_str(), "short")]).expect_err("too short");
        assert!(!short.to_string().contains("short\""), "{short}");
    }
}
