//! One parse test per fixture under fixtures/: each file parses, splits into
//! the events we expect (kind, type, sender) and keeps what matters.

use std::path::Path;

use whatsify::config::Key32;
use whatsify::crypto::pseudonym::Pseudonymizer;
use whatsify::domain::inbound::InboxEvent;
use whatsify::domain::payload::{
    self, Contact, Message, MessageKind, MetaError, Notification, Status,
};
use whatsify::store::Queue;
use whatsify::webhook::events::{Routed, split};

fn load(name: &str) -> Notification {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    payload::parse(&body).unwrap_or_else(|e| panic!("{name} does not parse: {e}"))
}

fn events(name: &str) -> Vec<Routed> {
    let n = load(name);
    assert_eq!(n.object, "whatsapp_business_account");
    split(
        n,
        &Pseudonymizer::new(&Key32::new([3; 32]), None),
        &whatsify::config::businesses::Directory::default_only(),
        &Default::default(),
        1_764_400_000,
    )
}

/// `kind:type:who` for each event; who is `wa:<id>`, `user:<id>` or `-`.
fn summary(routed: &[Routed]) -> Vec<String> {
    routed
        .iter()
        .map(|r| match &r.event {
            InboxEvent::Message(m) => {
                let msg = m.message.parse().expect("typed message");
                let who = match (&msg.from, &msg.from_user_id) {
                    (Some(w), _) => format!("wa:{w}"),
                    (None, Some(u)) => format!("user:{u}"),
                    _ => "-".into(),
                };
                format!("message:{}:{who}", msg.kind.type_name())
            }
            InboxEvent::Status(s) => {
                let st = s.status.parse().expect("typed status");
                let who = match (&st.recipient_id, &st.recipient_user_id) {
                    (Some(w), _) => format!("wa:{w}"),
                    (None, Some(u)) => format!("user:{u}"),
                    _ => "-".into(),
                };
                format!("status:{}:{who}", st.status.as_str())
            }
            InboxEvent::Preference(p) => {
                let pref = p.preference.parse().expect("typed preference");
                format!(
                    "preference:{}:wa:{}",
                    pref.value,
                    pref.wa_id.unwrap_or_default()
                )
            }
            InboxEvent::System(s) => format!("system:{}:-", s.field),
            InboxEvent::Agent(_) => unreachable!("a webhook carries no agent events"),
        })
        .collect()
}

/// A message event with its typed views.
struct Parsed {
    message: Message,
    contact: Contact,
}

fn only_message(name: &str) -> Parsed {
    let routed = events(name);
    assert_eq!(routed.len(), 1, "{name}: {:?}", summary(&routed));
    assert!(matches!(routed[0].queue, Queue::Contact(_)));
    match &routed[0].event {
        InboxEvent::Message(m) => Parsed {
            message: m.message.parse().expect("typed message"),
            contact: m.contact.parse().expect("typed contact"),
        },
        other => panic!("{name}: not a message: {}", other.label()),
    }
}

fn only_status(name: &str) -> Status {
    match &events(name)[0].event {
        InboxEvent::Status(s) => s.status.parse().expect("typed status"),
        other => panic!("{name}: not a status: {}", other.label()),
    }
}

fn system_value(name: &str) -> serde_json::Value {
    match &events(name)[0].event {
        InboxEvent::System(s) => {
            serde_json::from_str(s.value.as_ref().expect("value").get()).expect("json")
        }
        other => panic!("{name}: not a system event: {}", other.label()),
    }
}

macro_rules! fixture {
    ($name:ident, [$($expected:expr),* $(,)?]) => {
        #[test]
        fn $name() {
            let file = concat!(stringify!($name), ".json");
            let expected: Vec<&str> = vec![$($expected),*];
            assert_eq!(summary(&events(file)), expected, "{file}");
        }
    };
}

fixture!(messages_text, ["message:text:wa:16505550101"]);
fixture!(messages_text_reply_context, ["message:text:wa:16505550102"]);
fixture!(messages_text_forwarded, ["message:text:wa:16505550103"]);
fixture!(
    messages_text_frequently_forwarded,
    ["message:text:wa:16505550101"]
);
fixture!(messages_text_referral_ad, ["message:text:wa:16505550103"]);
fixture!(messages_text_non_ascii, ["message:text:wa:16505550101"]);
fixture!(messages_image, ["message:image:wa:16505550102"]);
fixture!(messages_audio_voice, ["message:audio:wa:16505550103"]);
fixture!(messages_video, ["message:video:wa:447700900123"]);
fixture!(messages_document, ["message:document:wa:16505550101"]);
fixture!(messages_sticker, ["message:sticker:wa:16505550103"]);
fixture!(messages_location, ["message:location:wa:447700900123"]);
fixture!(messages_contacts, ["message:contacts:wa:16505550101"]);
fixture!(
    messages_interactive_button_reply,
    ["message:interactive:wa:16505550102"]
);
fixture!(
    messages_interactive_list_reply,
    ["message:interactive:wa:16505550103"]
);
fixture!(
    messages_interactive_nfm_reply,
    ["message:interactive:wa:16505550101"]
);
fixture!(
    messages_button_quick_reply,
    ["message:button:wa:16505550102"]
);
fixture!(
    messages_button_stop_promotions,
    ["message:button:wa:16505550103"]
);
fixture!(messages_reaction, ["message:reaction:wa:16505550101"]);
fixture!(
    messages_reaction_removed,
    ["message:reaction:wa:16505550101"]
);
fixture!(messages_order, ["message:order:wa:5511955550199"]);
fixture!(messages_product_inquiry, ["message:text:wa:16505550103"]);
fixture!(
    messages_system_user_changed_number,
    ["message:system:wa:16505550102"]
);
fixture!(messages_unsupported, ["message:unsupported:wa:16505550103"]);
fixture!(messages_unknown_legacy, ["message:unknown:wa:16505550102"]);
fixture!(
    messages_bsuid_only,
    ["message:text:user:FR.71820394857261039485"]
);
fixture!(messages_bsuid_with_wa_id, ["message:text:wa:16505550101"]);
fixture!(messages_future_type, ["message:poll_vote:wa:16505550102"]);
fixture!(statuses_sent, ["status:sent:wa:16505550101"]);
fixture!(statuses_delivered, ["status:delivered:wa:16505550102"]);
fixture!(statuses_read, ["status:read:wa:16505550103"]);
fixture!(statuses_failed, ["status:failed:wa:5511955550199"]);
fixture!(
    statuses_failed_marketing_stopped,
    ["status:failed:wa:16505550103"]
);
fixture!(statuses_played, ["status:played:wa:16505550103"]);
fixture!(
    statuses_bsuid,
    ["status:delivered:user:GB.55019283746501928374"]
);
fixture!(value_errors, ["system:messages:-"]);
fixture!(user_preferences_stop, ["preference:stop:wa:16505550101"]);
fixture!(
    user_preferences_resume,
    ["preference:resume:wa:16505550102"]
);
fixture!(
    template_status_update,
    ["system:message_template_status_update:-"]
);
fixture!(unknown_field, ["system:some_future_field:-"]);
fixture!(
    batch_mixed,
    [
        "message:text:wa:16505550101",
        "message:text:wa:16505550101",
        "message:text:wa:16505550102",
        "status:delivered:wa:16505550103",
        "status:read:wa:16505550101",
        "preference:stop:wa:16505550103",
    ]
);

#[test]
fn every_fixture_file_has_a_test_above() {
    let src = include_str!("fixtures.rs");
    for f in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")).expect("dir")
    {
        let name = f
            .expect("entry")
            .file_name()
            .into_string()
            .expect("utf-8 name");
        if let Some(stem) = name.strip_suffix(".json") {
            let call = format!("fixture!({stem},");
            let call2 = format!("fixture!(\n    {stem},");
            assert!(
                src.contains(&call) || src.contains(&call2),
                "no test for fixtures/{name}"
            );
        }
    }
}

#[test]
fn message_details_are_kept() {
    let m = only_message("messages_text_non_ascii.json");
    let MessageKind::Text(t) = &m.message.kind else {
        panic!("not text")
    };
    assert!(t.body.contains("café crème brûlée") && t.body.contains('😀'));
    assert_eq!(
        m.contact.profile.and_then(|p| p.name).as_deref(),
        Some("Ana Pérez")
    );

    let m = only_message("messages_image.json");
    let MessageKind::Image(img) = &m.message.kind else {
        panic!("not image")
    };
    assert_eq!(img.caption.as_deref(), Some("Photo of the damaged box"));
    assert_eq!(img.id.as_deref(), Some("1148822733445566"));
    assert!(img.url.is_some());

    let m = only_message("messages_audio_voice.json");
    assert!(matches!(&m.message.kind, MessageKind::Audio(a) if a.voice == Some(true)));

    let m = only_message("messages_document.json");
    assert!(
        matches!(&m.message.kind, MessageKind::Document(d) if d.filename.as_deref() == Some("invoice-2025-11.pdf"))
    );

    let m = only_message("messages_location.json");
    let MessageKind::Location(l) = &m.message.kind else {
        panic!("not location")
    };
    assert!((l.latitude - 51.50332).abs() < 1e-9 && l.name.as_deref() == Some("London Eye"));

    let m = only_message("messages_order.json");
    let MessageKind::Order(o) = &m.message.kind else {
        panic!("not order")
    };
    assert_eq!(o.product_items.len(), 2);
    assert_eq!(o.product_items[0].product_retailer_id, "SKU-TSHIRT-M-BLK");
    assert_eq!(o.product_items[0].currency, "BRL");

    let m = only_message("messages_contacts.json");
    let MessageKind::Contacts(cards) = &m.message.kind else {
        panic!("not contacts")
    };
    assert_eq!(cards[0].birthday.as_deref(), Some("1991-04-12"));
    assert!(
        cards[0]
            .addresses
            .as_ref()
            .is_some_and(|a| a[0].city.as_deref() == Some("Menlo Park"))
    );
}

#[test]
fn replies_to_our_interactive_messages_and_templates_carry_their_ids() {
    let m = only_message("messages_interactive_button_reply.json");
    let MessageKind::Interactive(i) = &m.message.kind else {
        panic!("not interactive")
    };
    assert_eq!(i.reply_id(), Some("confirm_yes"));

    let m = only_message("messages_interactive_list_reply.json");
    let MessageKind::Interactive(i) = &m.message.kind else {
        panic!("not interactive")
    };
    assert_eq!(i.reply_id(), Some("slot_2025_12_02_1500"));
    assert!(
        i.list_reply
            .as_ref()
            .is_some_and(|r| r.description.is_some())
    );

    let m = only_message("messages_interactive_nfm_reply.json");
    let MessageKind::Interactive(i) = &m.message.kind else {
        panic!("not interactive")
    };
    let nfm = i.nfm_reply.as_ref().expect("nfm_reply");
    let inner: serde_json::Value =
        serde_json::from_str(&nfm.response_json).expect("response_json is JSON");
    assert_eq!(inner["flow_token"], "flowtok-5b1e-booking-0042");

    let m = only_message("messages_button_quick_reply.json");
    assert!(matches!(&m.message.kind, MessageKind::Button(b) if b.payload == "RESCHEDULE_APPT"));
    assert!(
        m.message
            .context
            .as_ref()
            .and_then(|c| c.id.as_ref())
            .is_some()
    );

    let m = only_message("messages_button_stop_promotions.json");
    assert!(matches!(&m.message.kind, MessageKind::Button(b) if b.text == "Stop promotions"));
}

#[test]
fn context_referral_and_reactions_are_kept() {
    let m = only_message("messages_text_reply_context.json");
    assert!(
        m.message
            .context
            .as_ref()
            .and_then(|c| c.id.as_ref())
            .is_some()
    );
    let m = only_message("messages_text_forwarded.json");
    assert_eq!(m.message.context.and_then(|c| c.forwarded), Some(true));
    let m = only_message("messages_text_frequently_forwarded.json");
    assert_eq!(
        m.message.context.and_then(|c| c.frequently_forwarded),
        Some(true)
    );
    let m = only_message("messages_product_inquiry.json");
    let p = m
        .message
        .context
        .and_then(|c| c.referred_product)
        .expect("referred_product");
    assert_eq!(p.product_retailer_id, "SKU-SHOE-38-WHT");
    let m = only_message("messages_text_referral_ad.json");
    let r = m.message.referral.expect("referral");
    assert_eq!(r.source_type.as_deref(), Some("ad"));
    assert!(r.ctwa_clid.is_some() && r.welcome_message.is_some());
    let m = only_message("messages_reaction.json");
    assert!(
        matches!(&m.message.kind, MessageKind::Reaction(r) if r.emoji.as_deref() == Some("👍"))
    );
    let m = only_message("messages_reaction_removed.json");
    assert!(matches!(&m.message.kind, MessageKind::Reaction(r) if r.emoji.is_none()));
}

#[test]
fn system_unsupported_and_unknown_messages_are_kept_with_their_errors() {
    let m = only_message("messages_system_user_changed_number.json");
    let MessageKind::System(s) = &m.message.kind else {
        panic!("not system")
    };
    assert_eq!(s.kind.as_deref(), Some("user_changed_number"));
    assert_eq!(s.wa_id.as_deref(), Some("447700900123"));

    let m = only_message("messages_unsupported.json");
    assert_eq!(m.message.errors[0].code, Some(131051));
    assert!(
        matches!(&m.message.kind, MessageKind::Unsupported(Some(u)) if u.kind.as_deref() == Some("poll_creation"))
    );

    let m = only_message("messages_unknown_legacy.json");
    assert_eq!(m.message.errors[0].code, Some(131051));

    let m = only_message("messages_future_type.json");
    assert!(
        matches!(&m.message.kind, MessageKind::Unknown { type_name, body: Some(_) } if type_name == "poll_vote")
    );
}

#[test]
fn a_username_user_without_a_phone_number_is_routed_by_user_id() {
    let m = only_message("messages_bsuid_only.json");
    assert!(m.message.from.is_none());
    assert_eq!(
        m.contact.user_id.as_deref(),
        Some("FR.71820394857261039485")
    );
    assert_eq!(
        m.contact.profile.and_then(|p| p.username).as_deref(),
        Some("@chloe.martin")
    );
}

#[test]
fn statuses_keep_errors_pricing_and_our_callback_data() {
    let s = only_status("statuses_sent.json");
    assert_eq!(s.biz_opaque_callback_data.as_deref(), Some("job-0001"));
    assert!(s.pricing.is_some() && s.conversation.is_some());
    assert_eq!(
        only_status("statuses_failed.json").errors[0].code,
        Some(131049)
    );
    assert_eq!(
        only_status("statuses_failed_marketing_stopped.json").errors[0].code,
        Some(131050)
    );
}

#[test]
fn account_level_errors_and_unknown_fields_go_to_the_system_queue() {
    for f in [
        "value_errors.json",
        "template_status_update.json",
        "unknown_field.json",
    ] {
        let routed = events(f);
        assert!(routed.iter().all(|r| r.queue == Queue::System), "{f}");
    }
    let errors: Vec<MetaError> =
        serde_json::from_value(system_value("value_errors.json")).expect("errors");
    assert_eq!(errors[0].code, Some(130429));
    let template = system_value("template_status_update.json");
    assert_eq!(template["event"], "APPROVED");
    assert!(system_value("unknown_field.json").is_object());
}

#[test]
fn a_batch_keeps_one_queue_per_contact_and_all_of_its_events() {
    let routed = events("batch_mixed.json");
    let queues: std::collections::HashSet<_> = routed.iter().map(|r| r.queue.clone()).collect();
    assert_eq!(queues.len(), 3, "three contacts in the batch");
    assert_eq!(
        routed[0].queue, routed[1].queue,
        "two messages from one contact share a queue"
    );
    let dedups: std::collections::HashSet<_> = routed.iter().map(|r| r.dedup.clone()).collect();
    assert_eq!(
        dedups.len(),
        routed.len(),
        "every event has its own de-duplication key"
    );
}

#[test]
fn every_event_survives_the_inbox_round_trip() {
    for f in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")).expect("dir")
    {
        let name = f
            .expect("entry")
            .file_name()
            .into_string()
            .expect("utf-8 name");
        if !name.ends_with(".json") {
            continue;
        }
        for r in events(&name) {
            let bytes = serde_json::to_vec(&r.event).expect("serialises");
            let back: InboxEvent = serde_json::from_slice(&bytes).expect("deserialises");
            assert_eq!(
                serde_json::to_value(&back).expect("value"),
                serde_json::to_value(&r.event).expect("value"),
                "{name}"
            );
        }
    }
}
