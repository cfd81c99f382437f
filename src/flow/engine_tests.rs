//! Engine tests: no runtime, no clock, no store.

use std::path::PathBuf;

use super::*;
use crate::flow::validate::compile;

const WELCOME: &str = r#"
id: welcome
triggers:
  - keywords: [hi, hello, menu]
  - default: true
fallback: "I can only read text and buttons here."
steps:
  - id: menu
    say: "Hi {{contact.name}}! What would you like to do?"
    buttons:
      - { id: offers, title: "See offers", goto_flow: promo }
      - { id: help, title: "Get help", goto: ask }
    timeout: { after: 30m, goto: bye }
  - id: ask
    ask: "Tell us what went wrong."
    save_as: problem
    validate: { min_length: 5 }
    retry: "Please tell us a bit more."
    max_retries: 1
    on_fail: sorry
    next: thanks
  - id: thanks
    say: "Thanks! We noted: {{vars.problem}}"
    next: handoff
  - id: handoff
    action: handoff
    next: done
  - id: sorry
    say: "Sorry, let's try later."
    next: done
  - id: bye
    say: "Bye for now."
    next: done
  - id: done
    end: true
"#;

const PROMO: &str = r#"
id: promo
triggers:
  - keywords: [offers, deals]
  - replies: [promo_start]
steps:
  - id: check
    branch:
      - { if: tag, has: vip, goto: vip }
    else: normal
  - id: vip
    say: "VIP deal for {{contact.name}}"
    next: tagit
  - id: normal
    say: "Today's deal"
    next: tagit
  - id: tagit
    set: { vars: { seen_promo: "yes" }, add_tags: [promo_seen] }
    next: fin
  - id: fin
    end: true
"#;

const TTL: u64 = 24 * 3600;
const T0: u64 = 1_800_000_000;

fn flows() -> Flows {
    compile(&[
        (PathBuf::from("welcome.yaml"), WELCOME.to_owned()),
        (PathBuf::from("promo.yaml"), PROMO.to_owned()),
    ])
    .unwrap_or_else(|e| panic!("{e:?}"))
}

fn ana() -> ContactView {
    ContactView {
        name: Some("Ana".into()),
        tags: Default::default(),
    }
}

fn text(s: &str) -> Input {
    Input::Text(s.into())
}

fn texts(o: &Outcome) -> Vec<String> {
    o.effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send {
                message: Outgoing::Text { body, .. },
            } => Some(body.clone()),
            Effect::Send {
                message: Outgoing::Buttons { body, .. },
            } => Some(format!("[buttons] {body}")),
            _ => None,
        })
        .collect()
}

fn at(o: &Outcome) -> Option<(&str, &str)> {
    o.session
        .as_ref()
        .map(|s| (s.flow.as_str(), s.step.as_str()))
}

#[test]
fn a_new_contact_gets_the_default_flow_with_their_name() {
    let f = flows();
    let o = step(&f, None, &ana(), &text("good morning"), T0, TTL);
    assert_eq!(texts(&o), ["[buttons] Hi Ana! What would you like to do?"]);
    assert_eq!(at(&o), Some(("welcome", "menu")));
    assert_eq!(o.session.as_ref().and_then(|s| s.deadline), Some(T0 + 1800));
    match &o.effects[0] {
        Effect::Send {
            message: Outgoing::Buttons { buttons, .. },
        } => assert_eq!(
            buttons,
            &[
                ("offers".to_owned(), "See offers".to_owned()),
                ("help".to_owned(), "Get help".to_owned())
            ]
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_button_reply_follows_its_choice_and_an_answer_is_saved() {
    let f = flows();
    let o = step(&f, None, &ana(), &text("hi"), T0, TTL);
    let help = Input::Choice {
        id: "help".into(),
        title: "Get help".into(),
    };
    let o = step(&f, o.session, &ana(), &help, T0 + 5, TTL);
    assert_eq!(texts(&o), ["Tell us what went wrong."]);
    assert_eq!(at(&o), Some(("welcome", "ask")));
    let o = step(
        &f,
        o.session,
        &ana(),
        &text("my parcel is late"),
        T0 + 9,
        TTL,
    );
    assert_eq!(texts(&o), ["Thanks! We noted: my parcel is late"]);
    assert!(o.effects.contains(&Effect::Action {
        action: crate::flow::Action::Handoff,
        purpose: None
    }));
    assert_eq!(o.session, None, "the flow ended");
}

#[test]
fn a_bad_answer_is_retried_then_sent_to_on_fail() {
    let f = flows();
    let o = step(&f, None, &ana(), &text("hi"), T0, TTL);
    let o = step(&f, o.session, &ana(), &text("Get help"), T0, TTL);
    assert_eq!(
        at(&o),
        Some(("welcome", "ask")),
        "typing a button title picks it"
    );
    let o = step(&f, o.session, &ana(), &text("bad"), T0, TTL);
    assert_eq!(texts(&o), ["Please tell us a bit more."]);
    assert_eq!(o.session.as_ref().map(|s| s.retries), Some(1));
    let o = step(&f, o.session, &ana(), &text("no"), T0, TTL);
    assert_eq!(texts(&o), ["Sorry, let's try later."]);
    assert_eq!(o.session, None);
}

#[test]
fn keywords_do_not_interrupt_an_answer_but_do_interrupt_buttons() {
    let f = flows();
    let o = step(&f, None, &ana(), &text("hi"), T0, TTL);
    let o2 = step(&f, o.session.clone(), &ana(), &text("Deals!"), T0, TTL);
    assert_eq!(
        texts(&o2),
        ["Today's deal"],
        "a keyword at a button step starts its flow"
    );
    let o = step(&f, o.session, &ana(), &text("Get help"), T0, TTL);
    let o = step(&f, o.session, &ana(), &text("deals"), T0, TTL);
    assert_eq!(
        texts(&o),
        ["Thanks! We noted: deals"],
        "at an ask, the text is the answer"
    );
}

#[test]
fn a_timeout_fires_only_once_due() {
    let f = flows();
    let o = step(&f, None, &ana(), &text("hi"), T0, TTL);
    let early = step(&f, o.session.clone(), &ana(), &Input::Tick, T0 + 1799, TTL);
    assert!(early.effects.is_empty());
    assert_eq!(early.session, o.session);
    let due = step(&f, o.session, &ana(), &Input::Tick, T0 + 1800, TTL);
    assert_eq!(texts(&due), ["Bye for now."]);
    assert_eq!(due.session, None);
    let idle = step(&f, None, &ana(), &Input::Tick, T0, TTL);
    assert!(idle.effects.is_empty() && idle.session.is_none());
}

#[test]
fn something_unreadable_gets_the_fallback_and_the_question_again() {
    let f = flows();
    let o = step(&f, None, &ana(), &text("hi"), T0, TTL);
    let o2 = step(&f, o.session.clone(), &ana(), &Input::Unreadable, T0, TTL);
    assert_eq!(
        texts(&o2),
        [
            "I can only read text and buttons here.",
            "[buttons] Hi Ana! What would you like to do?"
        ]
    );
    assert_eq!(at(&o2), Some(("welcome", "menu")));
}

#[test]
fn unexpected_text_at_buttons_shows_the_choices_again() {
    let f = flows();
    let o = step(&f, None, &ana(), &text("hi"), T0, TTL);
    let o = step(&f, o.session, &ana(), &text("what?"), T0, TTL);
    assert_eq!(texts(&o), ["[buttons] Hi Ana! What would you like to do?"]);
}

#[test]
fn branches_read_tags_and_set_changes_tags_and_vars() {
    let f = flows();
    let mut vip = ana();
    vip.tags.insert("vip".into());
    let o = step(&f, None, &vip, &text("offers"), T0, TTL);
    assert_eq!(texts(&o), ["VIP deal for Ana"]);
    assert!(o.effects.contains(&Effect::AddTag {
        tag: "promo_seen".into()
    }));
    assert!(o.contact.tags.contains("promo_seen"));
    let again = step(&f, None, &o.contact, &text("offers"), T0, TTL);
    assert!(
        !again
            .effects
            .iter()
            .any(|e| matches!(e, Effect::AddTag { .. })),
        "a tag already there is not added twice"
    );
    let o = step(
        &f,
        None,
        &ana(),
        &Input::Choice {
            id: "promo_start".into(),
            title: "Show me".into(),
        },
        T0,
        TTL,
    );
    assert_eq!(texts(&o), ["Today's deal"], "a reply id triggers its flow");
}

#[test]
fn a_missing_name_or_variable_renders_empty() {
    let f = flows();
    let o = step(&f, None, &ContactView::default(), &text("hi"), T0, TTL);
    assert_eq!(texts(&o), ["[buttons] Hi ! What would you like to do?"]);
    let s = Session {
        flow: "welcome".into(),
        step: "ask".into(),
        vars: Default::default(),
        retries: 0,
        deadline: None,
        last_active: T0,
    };
    let o = step(&f, Some(s), &ana(), &text("the box was broken"), T0, TTL);
    assert_eq!(texts(&o)[0], "Thanks! We noted: the box was broken");
}

#[test]
fn an_idle_session_starts_over_and_a_vanished_step_restarts_its_flow() {
    let f = flows();
    let o = step(&f, None, &ana(), &text("hi"), T0, TTL);
    let help = Input::Choice {
        id: "help".into(),
        title: "Get help".into(),
    };
    let late = step(&f, o.session.clone(), &ana(), &help, T0 + TTL, TTL);
    assert_eq!(
        texts(&late),
        ["[buttons] Hi Ana! What would you like to do?"],
        "expired: default flow"
    );
    let mut gone = o.session.clone().expect("session");
    gone.flow = "promo".into();
    gone.step = "removed_in_reload".into();
    let o = step(&f, Some(gone), &ana(), &text("anything"), T0, TTL);
    assert_eq!(texts(&o), ["Today's deal"], "restarts the session's flow");
}

#[test]
fn the_engine_is_a_pure_function() {
    let f = flows();
    let a = step(&f, None, &ana(), &text("hi"), T0, TTL);
    let b = step(&f, None, &ana(), &text("hi"), T0, TTL);
    assert_eq!(a, b);
}
