//! The outbox: every message whatsify sends leaves through here.
//!
//! A worker turns a flow's effects into [`Job`]s and queues them, sealed,
//! in the contact's outbox (in the same atomic write as the session). The
//! [`sender::Sender`]s take one contact's outbox at a time (any instance,
//! never two at once), and send its jobs in order through Meta's Graph API
//! ([`graph`]), each only after the previous one was accepted:
//!
//! - the 24-hour customer service window and `outbox.max_age` are checked
//!   first: a free-form message outside the window is recorded as
//!   `outside_window`, a stale one as `expired`, and neither is sent;
//! - a paused number (its breaker is open, see [`sender`]) sends nothing;
//! - rate limits shared by every instance pace each business number
//!   (`outbox.messages_per_second`) and, for business-initiated messages,
//!   each recipient (Meta's pair limit);
//! - transient failures are retried with full-jitter backoff, then moved to
//!   the dead letters; permanent ones are recorded against the message.
//!
//! Every outcome is a [`crate::store::Delivery`] record that status
//! webhooks later move forward (sent < delivered < read; final states stay).
//!
//! Two jobs are not messages: an erasure, carried out by
//! [`crate::privacy::erasure`] when its turn comes, and an event for a CRM
//! or helpdesk receiver, delivered by [`crate::integrations::delivery`];
//! the sender only dispatches them.

pub mod graph;
pub mod sender;

use serde_json::{Value, json};

use crate::domain::outbound::{Job, MediaRef, Message, Outgoing, Recipient, TemplateParam};

/// Meta's customer service window: free-form messages may be sent for 24
/// hours after the customer's last message.
pub const WINDOW_SECS: u64 = 24 * 3600;

fn media_object(source: &MediaRef) -> Value {
    match source {
        MediaRef::Id(id) => json!({ "id": id }),
        MediaRef::Link(link) => json!({ "link": link }),
    }
}

fn flow_content(message: &Outgoing) -> (&'static str, Value) {
    match message {
        Outgoing::Text { body, preview_url } => {
            ("text", json!({ "body": body, "preview_url": preview_url }))
        }
        Outgoing::Buttons {
            body,
            header,
            footer,
            buttons,
        } => {
            let mut i = json!({
                "type": "button",
                "body": { "text": body },
                "action": { "buttons": buttons.iter().map(|(id, title)| json!({
                    "type": "reply", "reply": { "id": id, "title": title }
                })).collect::<Vec<_>>() },
            });
            if let Some(h) = header {
                i["header"] = json!({ "type": "text", "text": h });
            }
            if let Some(f) = footer {
                i["footer"] = json!({ "text": f });
            }
            ("interactive", i)
        }
        Outgoing::List {
            body,
            header,
            footer,
            button,
            sections,
        } => {
            let mut i = json!({
                "type": "list",
                "body": { "text": body },
                "action": {
                    "button": button,
                    "sections": sections.iter().map(|s| {
                        let mut sec = json!({ "rows": s.rows.iter().map(|(id, title, d)| {
                            let mut r = json!({ "id": id, "title": title });
                            if let Some(d) = d { r["description"] = json!(d); }
                            r
                        }).collect::<Vec<_>>() });
                        if let Some(t) = &s.title { sec["title"] = json!(t); }
                        sec
                    }).collect::<Vec<_>>(),
                },
            });
            if let Some(h) = header {
                i["header"] = json!({ "type": "text", "text": h });
            }
            if let Some(f) = footer {
                i["footer"] = json!({ "text": f });
            }
            ("interactive", i)
        }
        Outgoing::Media {
            kind,
            link,
            caption,
            filename,
        } => {
            let kind = if kind == "document" {
                "document"
            } else {
                "image"
            };
            (
                kind,
                media_content(&MediaRef::Link(link.clone()), caption, filename),
            )
        }
        Outgoing::Template {
            name,
            language,
            params,
            ..
        } => (
            "template",
            template_content(
                name,
                language,
                None,
                &params
                    .iter()
                    .map(|p| TemplateParam {
                        name: None,
                        text: p.clone(),
                    })
                    .collect::<Vec<_>>(),
                &[],
            ),
        ),
    }
}

fn media_content(source: &MediaRef, caption: &Option<String>, filename: &Option<String>) -> Value {
    let mut m = media_object(source);
    if let Some(c) = caption {
        m["caption"] = json!(c);
    }
    if let Some(f) = filename {
        m["filename"] = json!(f);
    }
    m
}

fn template_content(
    name: &str,
    language: &str,
    header: Option<&(String, MediaRef)>,
    body: &[TemplateParam],
    quick_replies: &[String],
) -> Value {
    let mut t = json!({ "name": name, "language": { "code": language } });
    let mut components = Vec::new();
    if let Some((kind, source)) = header {
        components.push(json!({
            "type": "header",
            "parameters": [{ "type": kind, kind.as_str(): media_object(source) }],
        }));
    }
    if !body.is_empty() {
        components.push(json!({
            "type": "body",
            "parameters": body.iter().map(|p| {
                let mut v = json!({ "type": "text", "text": p.text });
                if let Some(n) = &p.name { v["parameter_name"] = json!(n); }
                v
            }).collect::<Vec<_>>(),
        }));
    }
    for (i, payload) in quick_replies.iter().enumerate() {
        components.push(json!({
            "type": "button",
            "sub_type": "quick_reply",
            "index": i.to_string(),
            "parameters": [{ "type": "payload", "payload": payload }],
        }));
    }
    if !components.is_empty() {
        t["components"] = json!(components);
    }
    t
}

/// The Graph API request body for a job (Meta's documented shapes).
pub fn graph_body(job: &Job) -> Value {
    let (kind, content) = match &job.message {
        Message::MarkRead { message_id } => {
            return json!({
                "messaging_product": "whatsapp",
                "status": "read",
                "message_id": message_id,
            });
        }
        Message::Flow { message } => flow_content(message),
        Message::Media {
            media,
            source,
            caption,
            filename,
        } => {
            let kind = match media.as_str() {
                "document" => "document",
                "video" => "video",
                "audio" => "audio",
                "sticker" => "sticker",
                _ => "image",
            };
            (kind, media_content(source, caption, filename))
        }
        Message::Template {
            name,
            language,
            header,
            body,
            quick_replies,
            ..
        } => (
            "template",
            template_content(name, language, header.as_ref(), body, quick_replies),
        ),
        Message::CampaignTemplate { template } => ("template", template.clone()),
        Message::Reaction { message_id, emoji } => (
            "reaction",
            json!({ "message_id": message_id, "emoji": emoji }),
        ),
        // The sender uploads the file and sends it as a document job; this
        // body only stands in if it is ever sent as is.
        Message::Export => (
            "text",
            json!({ "body": "A copy of your data is on its way.", "preview_url": false }),
        ),
        // Never sent: the sender erases (or posts to a receiver) instead.
        Message::Erase | Message::Hook { .. } => {
            ("text", json!({ "body": "", "preview_url": false }))
        }
    };
    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "biz_opaque_callback_data": job.id,
        "type": kind,
        kind: content,
    });
    match &job.to {
        Recipient::WaId(w) => body["to"] = json!(format!("+{w}")),
        Recipient::UserId(u) => body["recipient"] = json!(u),
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::outbound::Origin;

    fn job(message: Message, to: Recipient) -> Job {
        Job {
            id: "job-1".into(),
            phone_number_id: "106540352242922".into(),
            to,
            message,
            created_at: 0,
            origin: Origin::Reply,
            window_at: None,
            purpose: None,
        }
    }

    #[test]
    fn a_text_goes_to_the_number_with_a_plus_and_carries_the_job_id() {
        let b = graph_body(&job(
            Message::Flow {
                message: Outgoing::Text {
                    body: "Hi".into(),
                    preview_url: true,
                },
            },
            Recipient::WaId("16505551234".into()),
        ));
        assert_eq!(b["to"], "+16505551234");
        assert_eq!(b["type"], "text");
        assert_eq!(b["text"]["preview_url"], true);
        assert_eq!(b["biz_opaque_callback_data"], "job-1");
        assert_eq!(b["recipient_type"], "individual");
    }

    #[test]
    fn a_user_known_only_by_bsuid_is_addressed_by_recipient() {
        let b = graph_body(&job(
            Message::Reaction {
                message_id: "wamid.X".into(),
                emoji: "\u{1f44d}".into(),
            },
            Recipient::UserId("US.13491208655302741918".into()),
        ));
        assert!(b.get("to").is_none());
        assert_eq!(b["recipient"], "US.13491208655302741918");
        assert_eq!(b["reaction"]["message_id"], "wamid.X");
    }

    #[test]
    fn mark_read_has_meta_s_status_body() {
        let b = graph_body(&job(
            Message::MarkRead {
                message_id: "wamid.IN".into(),
            },
            Recipient::WaId("1".into()),
        ));
        assert_eq!(
            b,
            json!({"messaging_product":"whatsapp","status":"read","message_id":"wamid.IN"})
        );
    }

    #[test]
    fn templates_carry_header_named_body_and_quick_reply_components() {
        let b = graph_body(&job(
            Message::Template {
                name: "spring_offer".into(),
                language: "en_US".into(),
                header: Some(("image".into(), MediaRef::Id("1234".into()))),
                body: vec![TemplateParam {
                    name: Some("first_name".into()),
                    text: "Ana".into(),
                }],
                quick_replies: vec!["stop-promotions".into()],
                marketing: true,
            },
            Recipient::WaId("1".into()),
        ));
        let c = &b["template"]["components"];
        assert_eq!(c[0]["parameters"][0]["image"]["id"], "1234");
        assert_eq!(c[1]["parameters"][0]["parameter_name"], "first_name");
        assert_eq!(c[2]["sub_type"], "quick_reply");
        assert_eq!(c[2]["index"], "0");
        assert_eq!(c[2]["parameters"][0]["payload"], "stop-promotions");
        assert!(
            !Message::Template {
                name: String::new(),
                language: String::new(),
                header: None,
                body: vec![],
                quick_replies: vec![],
                marketing: true
            }
            .needs_window()
        );
    }

    #[test]
    fn documents_by_uploaded_id_keep_their_filename() {
        let b = graph_body(&job(
            Message::Media {
                media: "document".into(),
                source: MediaRef::Id("998877".into()),
                caption: Some("Your data".into()),
                filename: Some("my-data.json".into()),
            },
            Recipient::WaId("1".into()),
        ));
        assert_eq!(b["type"], "document");
        assert_eq!(b["document"]["id"], "998877");
        assert_eq!(b["document"]["filename"], "my-data.json");
    }
}
