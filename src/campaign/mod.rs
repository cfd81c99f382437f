//! Promotional campaigns: an approved marketing template sent to an
//! audience, only to the contacts whose marketing consent is granted at the
//! moment of sending.
//!
//! - `POST /admin/campaigns` checks the request ([`parse`]), resolves the
//!   audience (a list of wa_ids, the contacts with some tags, or every
//!   consenting contact) and stores the campaign and its audience (sealed)
//!   in one go: 202 with its id.
//! - The [`dispatch::Dispatcher`] of any instance (one at a time per
//!   campaign) takes the audience from the front at the campaign's rate,
//!   checks each contact (erased, consent, address), fills the template in
//!   for them and queues it in their outbox, atomically with the mark that
//!   they had their turn: never twice per contact, resumable after a crash.
//! - The senders send it like any business-initiated message: paced by the
//!   number's rate limit and the recipient's pair limit, its marketing
//!   consent checked again right before the request, a cancelled
//!   campaign's messages recorded as `cancelled` instead.
//! - The store counts each contact's progress per campaign as the delivery
//!   records move (accepted, status webhooks), and opt-outs within 24 hours
//!   of a campaign message ([`report`]).
//!
//! Campaigns may use at most [`RATE_SHARE_PERCENT`] of a number's
//! `outbox.messages_per_second`, together: the rest is kept for
//! conversational replies.

pub mod dispatch;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::domain::campaign::{Campaign, CampaignStatus, OptOut};
use crate::domain::outbound::Recipient;
use crate::flow::text::{Text, Values};

/// The share of a number's rate campaigns may use together (percent).
pub const RATE_SHARE_PERCENT: u32 = 80;
/// The most wa_ids one campaign may list.
pub const MAX_WA_IDS: usize = 100_000;
/// The payload whatsify gives the template's opt-out quick reply: a tap
/// on it is a marketing opt-out (see [`crate::privacy::keywords`]).
pub const STOP_PAYLOAD: &str = "stop_promotions";

/// One audience entry (sealed under the system key, in the context
/// [`member_context`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The pseudonymous contact key.
    pub contact: String,
    /// Where to send; `None`: read from the contact's profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Recipient>,
    /// Variables given with this recipient (they win over the session's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
}

/// The context audience entries are sealed under.
pub fn member_context(campaign: &str) -> Vec<u8> {
    format!("campaign:{campaign}").into_bytes()
}

/// The audience of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Audience {
    /// wa_ids (digits), each with its own variables.
    WaIds(Vec<(String, BTreeMap<String, String>)>),
    /// Contacts with any of these tags.
    Tags(Vec<String>),
    /// Every contact whose marketing consent is granted.
    AllConsenting,
}

/// A checked `POST /admin/campaigns` request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub name: String,
    pub template: Value,
    pub audience: Audience,
    pub phone_number_id: String,
    pub rate_per_second: u32,
    pub send_at: Option<u64>,
    pub opt_out: OptOut,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    name: String,
    template: RawTemplate,
    audience: RawAudience,
    #[serde(default)]
    phone_number_id: Option<String>,
    #[serde(default)]
    rate_per_second: Option<u32>,
    #[serde(default)]
    send_at: Option<String>,
    #[serde(default)]
    opt_out: Option<RawOptOut>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    name: String,
    language: RawLanguage,
    #[serde(default)]
    components: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLanguage {
    code: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudience {
    #[serde(default)]
    wa_ids: Option<Vec<RawWaId>>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    all_consenting: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawWaId {
    Plain(String),
    WithVars {
        wa_id: String,
        #[serde(default)]
        vars: BTreeMap<String, String>,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum RawOptOut {
    Button(u8),
    Text(bool),
}

/// What the request needs from the settings.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `meta.phone_number_id`: the default sender, if set.
    pub phone_number_id: Option<String>,
    /// `outbox.messages_per_second`.
    pub messages_per_second: u32,
}

impl Limits {
    /// From the settings in force.
    pub fn of(settings: &crate::config::Settings) -> Limits {
        Limits {
            phone_number_id: settings.meta.phone_number_id.clone(),
            messages_per_second: settings.outbox.messages_per_second,
        }
    }

    /// The fastest a campaign may go: its share of the number's rate.
    pub fn max_rate(&self) -> u32 {
        (self.messages_per_second.saturating_mul(RATE_SHARE_PERCENT) / 100).max(1)
    }
}

const BODY_SHAPE: &str = "the body must be {\"name\": \"...\", \"template\": {\"name\": \"...\", \"language\": {\"code\": \"en_US\"}, \"components\": [...]}, \"audience\": {\"wa_ids\": [...]} | {\"tags\": [...]} | {\"all_consenting\": true}, \"opt_out\": {\"button\": INDEX} | {\"text\": true}, \"phone_number_id\"?, \"rate_per_second\"?, \"send_at\"?}";

/// Checks a `POST /admin/campaigns` body. The error says what is wrong and
/// where, never echoing a value (it could be a phone number).
pub fn parse(body: &[u8], limits: &Limits, now: u64) -> Result<Request, String> {
    let raw: RawRequest =
        serde_json::from_slice(body).map_err(|e| format!("{BODY_SHAPE}: {}", redact(&e)))?;
    let name = raw.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 120 || name.chars().any(char::is_control) {
        return Err("name must be 1 to 120 printable characters".into());
    }
    let t = &raw.template;
    if t.name.is_empty()
        || t.name.len() > 512
        || !t
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(
            "template.name must be the approved template's name: lowercase letters, digits and underscores".into(),
        );
    }
    let code = &t.language.code;
    if code.len() < 2
        || code.len() > 15
        || !code.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_')
    {
        return Err("template.language.code must be a language code such as \"en_US\"".into());
    }
    for (i, c) in t.components.iter().enumerate() {
        check_component(i, c)?;
    }
    let audience = audience(raw.audience)?;
    let phone_number_id = match raw.phone_number_id {
        Some(p) if p.is_empty() || p.len() > 32 || !p.bytes().all(|b| b.is_ascii_digit()) => {
            return Err("phone_number_id must be the business number's id (digits)".into());
        }
        Some(p) => p,
        None => limits.phone_number_id.clone().ok_or_else(|| {
            "phone_number_id is required: meta.phone_number_id is not set".to_owned()
        })?,
    };
    let max = limits.max_rate();
    let rate_per_second = match raw.rate_per_second {
        Some(r) if r == 0 || r > max => {
            return Err(format!(
                "rate_per_second must be 1 to {max} ({RATE_SHARE_PERCENT}% of outbox.messages_per_second; the rest is kept for replies)"
            ));
        }
        Some(r) => r,
        None => max,
    };
    let send_at = match raw.send_at {
        None => None,
        Some(text) => {
            let at =
                time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| {
                        "send_at must be an RFC 3339 time such as \"2026-12-01T09:00:00+01:00\""
                            .to_owned()
                    })?;
            let at = u64::try_from(at.unix_timestamp()).unwrap_or(0);
            if at > now + 366 * 86_400 {
                return Err("send_at must be within a year".into());
            }
            Some(at)
        }
    };
    let opt_out = match raw.opt_out {
        Some(RawOptOut::Button(i)) if i <= 9 => OptOut::Button(i),
        Some(RawOptOut::Button(_)) => {
            return Err("opt_out.button must be the index (0 to 9) of the template's \"Stop promotions\" quick reply".into());
        }
        Some(RawOptOut::Text(true)) => OptOut::Text,
        Some(RawOptOut::Text(false)) | None => {
            return Err("opt_out must say how the template tells customers to stop promotions: {\"button\": INDEX} (its \"Stop promotions\" quick reply) or {\"text\": true} (its text says to reply STOP); see docs/http-api.md".into());
        }
    };
    if let OptOut::Button(i) = opt_out {
        let clash = t.components.iter().any(|c| {
            c["type"] == "button"
                && c["index"].as_str() == Some(i.to_string().as_str())
                && c["sub_type"] != "quick_reply"
        });
        if clash {
            return Err(format!(
                "opt_out.button {i}: the template's button {i} is not a quick reply"
            ));
        }
    }
    let template = json!({
        "name": t.name,
        "language": { "code": code },
        "components": t.components,
    });
    Ok(Request {
        name,
        template,
        audience,
        phone_number_id,
        rate_per_second,
        send_at,
        opt_out,
    })
}

/// `audience`: exactly one of wa_ids, tags or all_consenting.
fn audience(raw: RawAudience) -> Result<Audience, String> {
    Ok(match (raw.wa_ids, raw.tags, raw.all_consenting) {
        (Some(ids), None, None) => wa_ids(ids)?,
        (None, Some(tags), None) => {
            if tags.is_empty()
                || tags.len() > 20
                || tags.iter().any(|t| t.trim().is_empty() || t.len() > 64)
            {
                return Err("audience.tags must list 1 to 20 tags of 1 to 64 characters".into());
            }
            Audience::Tags(tags.iter().map(|t| t.trim().to_owned()).collect())
        }
        (None, None, Some(true)) => Audience::AllConsenting,
        (None, None, Some(false)) => {
            return Err("audience.all_consenting must be true (or give wa_ids or tags)".into());
        }
        _ => {
            return Err("audience must have exactly one of wa_ids, tags or all_consenting".into());
        }
    })
}

/// `audience.wa_ids`: phone numbers in international form, each with its
/// variables, duplicates dropped.
fn wa_ids(ids: Vec<RawWaId>) -> Result<Audience, String> {
    if ids.is_empty() || ids.len() > MAX_WA_IDS {
        return Err(format!(
            "audience.wa_ids must list 1 to {MAX_WA_IDS} phone numbers"
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(ids.len());
    for (i, entry) in ids.into_iter().enumerate() {
        let (id, vars) = match entry {
            RawWaId::Plain(id) => (id, BTreeMap::new()),
            RawWaId::WithVars { wa_id, vars } => (wa_id, vars),
        };
        let digits = id.strip_prefix('+').unwrap_or(&id);
        if !(6..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "audience.wa_ids[{i}] must be a phone number in international form (6 to 15 digits, an optional +)"
            ));
        }
        for name in vars.keys() {
            if !crate::flow::text::valid_name(name) {
                return Err(format!(
                    "audience.wa_ids[{i}].vars: a variable name must be letters, digits and underscores"
                ));
            }
        }
        if seen.insert(digits.to_owned()) {
            out.push((digits.to_owned(), vars));
        }
    }
    Ok(Audience::WaIds(out))
}

/// serde's message, without the value it quotes for a wrong type or value
/// (it could be a phone number): it keeps the field, the kind and the
/// position.
fn redact(e: &serde_json::Error) -> String {
    static QUOTED: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r#"(invalid (?:type|value|length): [a-z]+(?: point)?) (?:"[^"]*"|`[^`]*`)"#,
        )
        .ok()
    });
    let text = e.to_string();
    match QUOTED.as_ref() {
        Some(re) => re.replace_all(&text, "$1").into_owned(),
        None => "the body is not valid".to_owned(),
    }
}

/// A component must be Meta's shape; its text parameters may hold
/// placeholders, which must be known ones.
fn check_component(i: usize, c: &Value) -> Result<(), String> {
    let kind = c["type"].as_str().unwrap_or("");
    if !matches!(
        kind,
        "header" | "body" | "button" | "footer" | "carousel" | "limited_time_offer"
    ) {
        return Err(format!(
            "template.components[{i}].type must be header, body, footer, button, carousel or limited_time_offer"
        ));
    }
    if kind == "button" && !c["index"].is_string() {
        return Err(format!(
            "template.components[{i}]: a button component needs its \"index\" as a string, as Meta expects"
        ));
    }
    if let Some(params) = c.get("parameters") {
        let Some(params) = params.as_array() else {
            return Err(format!(
                "template.components[{i}].parameters must be a list"
            ));
        };
        for (j, p) in params.iter().enumerate() {
            if !p["type"].is_string() {
                return Err(format!(
                    "template.components[{i}].parameters[{j}] needs a \"type\""
                ));
            }
            for field in ["text", "payload"] {
                if let Some(text) = p.get(field) {
                    let Some(text) = text.as_str() else {
                        return Err(format!(
                            "template.components[{i}].parameters[{j}].{field} must be a string"
                        ));
                    };
                    Text::parse(text).map_err(|e| {
                        format!("template.components[{i}].parameters[{j}].{field}: {e}")
                    })?;
                }
            }
        }
    }
    Ok(())
}

/// What a contact's placeholders read.
pub struct ContactValues<'a> {
    pub name: Option<&'a str>,
    pub vars: &'a BTreeMap<String, String>,
    pub session_vars: &'a BTreeMap<String, String>,
}

impl Values for ContactValues<'_> {
    fn contact_name(&self) -> Option<&str> {
        self.name
    }
    fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .or_else(|| self.session_vars.get(name))
            .map(String::as_str)
    }
}

/// The template filled in for one contact, with the opt-out quick reply's
/// payload; `None` when a parameter would be empty (Meta refuses those:
/// the contact is skipped as `missing_parameter`).
pub fn render(campaign: &Campaign, values: &ContactValues<'_>) -> Option<Value> {
    let mut t = campaign.template.clone();
    let components = t["components"].as_array_mut()?;
    for c in components.iter_mut() {
        let Some(params) = c.get_mut("parameters").and_then(Value::as_array_mut) else {
            continue;
        };
        for p in params.iter_mut() {
            for field in ["text", "payload"] {
                if let Some(raw) = p.get(field).and_then(Value::as_str) {
                    let text = Text::parse(raw).ok()?.render(values);
                    if text.trim().is_empty() {
                        return None;
                    }
                    p[field] = json!(text);
                }
            }
        }
    }
    if let OptOut::Button(i) = campaign.opt_out {
        let index = i.to_string();
        components.retain(|c| !(c["type"] == "button" && c["index"] == index.as_str()));
        components.push(json!({
            "type": "button",
            "sub_type": "quick_reply",
            "index": index,
            "parameters": [{ "type": "payload", "payload": STOP_PAYLOAD }],
        }));
    }
    if components.is_empty() {
        t.as_object_mut()?.remove("components");
    }
    Some(t)
}

/// The answer of `GET /admin/campaigns/{id}`.
pub fn report(
    c: &Campaign,
    status: CampaignStatus,
    left: u64,
    counts: &BTreeMap<String, i64>,
) -> Value {
    let n = |k: &str| counts.get(k).copied().unwrap_or(0).max(0);
    let mut skipped = BTreeMap::new();
    let mut failed = BTreeMap::new();
    for (k, v) in counts {
        if let Some(reason) = k.strip_prefix("skipped:") {
            skipped.insert(reason.to_owned(), (*v).max(0));
        } else if let Some(code) = k.strip_prefix("failed:") {
            failed.insert(code.to_owned(), (*v).max(0));
        }
    }
    for reason in crate::domain::campaign::Skip::REPORTED {
        skipped.entry(reason.as_str().to_owned()).or_insert(0);
    }
    // A cancelled campaign's audience left was dropped: those contacts are
    // the ones never dispatched.
    let never = i64::try_from(c.targeted)
        .unwrap_or(i64::MAX)
        .saturating_sub(n("dispatched"))
        .max(0);
    let cancelled = n("cancelled")
        + if status == CampaignStatus::Cancelled {
            never
        } else {
            0
        };
    json!({
        "id": c.id,
        "name": c.name,
        "status": status,
        "template": { "name": c.template["name"], "language": c.template["language"] },
        "audience": c.audience,
        "phone_number_id": c.phone_number_id,
        "rate_per_second": c.rate_per_second,
        "send_at": c.send_at,
        "created_at": c.created_at,
        "targeted": c.targeted,
        "waiting": if status == CampaignStatus::Cancelled { 0 } else { left },
        "queued": n("queued"),
        "skipped": skipped,
        "sent": n("sent"),
        "delivered": n("delivered"),
        "read": n("read"),
        "failed": failed,
        "cancelled": cancelled,
        "opt_outs": n("opt_outs"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            phone_number_id: Some("106540352242922".into()),
            messages_per_second: 80,
        }
    }

    fn body(extra: Value) -> Vec<u8> {
        let mut b = json!({
            "name": "Spring sale",
            "template": {"name": "spring_sale", "language": {"code": "en_US"}, "components": [
                {"type": "body", "parameters": [{"type": "text", "text": "{{contact.name}}"}, {"type": "text", "text": "{{vars.code}}"}]}
            ]},
            "audience": {"wa_ids": ["+16505551234", "16505551235", {"wa_id": "16505551236", "vars": {"code": "X1"}}]},
            "opt_out": {"button": 1},
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            b[k] = v.clone();
        }
        serde_json::to_vec(&b).unwrap_or_default()
    }

    #[test]
    fn a_good_request_is_read_with_its_defaults() {
        let r = parse(&body(json!({})), &limits(), 0).expect("valid");
        assert_eq!(r.phone_number_id, "106540352242922");
        assert_eq!(r.rate_per_second, 64);
        assert_eq!(r.opt_out, OptOut::Button(1));
        let Audience::WaIds(ids) = r.audience else {
            panic!("wa_ids")
        };
        assert_eq!(ids[0].0, "16505551234");
        assert_eq!(ids[2].1["code"], "X1");
        let r = parse(
            &body(json!({"send_at": "2026-12-01T09:00:00+01:00"})),
            &limits(),
            1_795_000_000,
        )
        .expect("valid");
        assert_eq!(r.send_at, Some(1_796_112_000));
    }

    #[test]
    fn a_bad_request_says_what_is_wrong_without_echoing_values() {
        let cases = [
            (
                json!({"rate_per_second": 65}),
                "rate_per_second must be 1 to 64",
            ),
            (
                json!({"send_at": "tomorrow"}),
                "send_at must be an RFC 3339",
            ),
            (
                json!({"audience": {"wa_ids": ["12ab"]}}),
                "audience.wa_ids[0]",
            ),
            (
                json!({"audience": {"tags": ["vip"], "all_consenting": true}}),
                "exactly one",
            ),
            (json!({"opt_out": null}), "opt_out must say"),
            (
                json!({"template": {"name": "Spring Sale", "language": {"code": "en_US"}}}),
                "template.name",
            ),
            (
                json!({"template": {"name": "s", "language": {"code": "en_US"}, "components": [{"type": "body", "parameters": [{"type": "text", "text": "{{phone}}"}]}]}}),
                "template.components[0].parameters[0].text: unknown placeholder",
            ),
            (json!({"surprise": 1}), "unknown field `surprise`"),
            (
                json!({"name": 447700900123u64}),
                "invalid type: integer, expected a string",
            ),
            (
                json!({"rate_per_second": "447700900123"}),
                "invalid type: string, expected u32",
            ),
        ];
        for (extra, want) in cases {
            let e = parse(&body(extra.clone()), &limits(), 0).expect_err("invalid");
            assert!(e.contains(want), "{extra}: {e}");
            assert!(
                !e.contains("12ab") && !e.contains("tomorrow") && !e.contains("447700900123"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_template_is_filled_in_per_contact_with_the_stop_payload() {
        let r = parse(&body(json!({})), &limits(), 0).expect("valid");
        let c = Campaign {
            id: "c1".into(),
            name: r.name,
            template: r.template,
            audience: "wa_ids".into(),
            tags: vec![],
            phone_number_id: r.phone_number_id,
            rate_per_second: 1,
            send_at: 0,
            created_at: 0,
            opt_out: r.opt_out,
            targeted: 3,
            business: None,
        };
        let vars: BTreeMap<String, String> = [("code".to_owned(), "X1".to_owned())].into();
        let none = BTreeMap::new();
        let t = render(
            &c,
            &ContactValues {
                name: Some("Ana"),
                vars: &vars,
                session_vars: &none,
            },
        )
        .expect("filled");
        assert_eq!(t["components"][0]["parameters"][0]["text"], "Ana");
        assert_eq!(t["components"][0]["parameters"][1]["text"], "X1");
        assert_eq!(t["components"][1]["index"], "1");
        assert_eq!(t["components"][1]["parameters"][0]["payload"], STOP_PAYLOAD);
        // No name: Meta would refuse an empty parameter.
        assert!(
            render(
                &c,
                &ContactValues {
                    name: None,
                    vars: &vars,
                    session_vars: &none
                }
            )
            .is_none()
        );
    }
}
