//! Conversation transcripts (`flows/tests/*.yaml`): what the customer sends
//! and what the bot must answer, run against the flows with the real
//! engine. Used by `whatsify test` and by the test suite.
//!
//! ```yaml
//! name: support hands off to a person
//! contact: { name: Ana }
//! turns:
//!   - send: hi
//!     expect:
//!       - "buttons: Hi Ana! How can we help? [See offers | Get help | My privacy]"
//!   - tap: Get help            # a button or list row, by title or id
//!     expect: ["text: What went wrong?"]
//!   - wait: 30m                # time passes; due timeouts fire
//!     expect: []
//!   - send_image: true         # something a flow cannot read
//!     expect: [...]
//! ```
//!
//! Each answer is one line: `text: …`, `buttons: … [A | B]`,
//! `list: … (Button) [Row | Row]`, `image: URL`, `document: URL`,
//! `template: NAME`, `action: NAME`, `action: NAME PURPOSE`, `tag: +T`,
//! `tag: -T`, `name: NEW`.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::Flows;
use super::engine::{Effect, step};
use crate::domain::inbound::Input;
use crate::domain::outbound::Outgoing;
use crate::domain::profile::{ContactView, Session};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transcript {
    pub name: String,
    #[serde(default)]
    pub contact: TranscriptContact,
    pub turns: Vec<Turn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscriptContact {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    #[serde(default)]
    pub send: Option<String>,
    #[serde(default)]
    pub tap: Option<String>,
    #[serde(default)]
    pub wait: Option<String>,
    #[serde(default)]
    pub send_image: Option<bool>,
    #[serde(default)]
    pub expect: Vec<String>,
}

/// The result of one transcript.
#[derive(Debug)]
pub struct Report {
    pub file: PathBuf,
    pub name: String,
    /// Steps the transcript ran or stopped at.
    pub visited: HashSet<(usize, usize)>,
    /// Empty when it passed; otherwise a readable account of the first
    /// turn that differed.
    pub failure: Option<String>,
}

/// One line per effect, as transcripts write them.
pub fn describe(effect: &Effect) -> String {
    match effect {
        Effect::Send { message } => match message {
            Outgoing::Text { body, .. } => format!("text: {body}"),
            Outgoing::Buttons { body, buttons, .. } => {
                let titles: Vec<&str> = buttons.iter().map(|(_, t)| t.as_str()).collect();
                format!("buttons: {body} [{}]", titles.join(" | "))
            }
            Outgoing::List {
                body,
                button,
                sections,
                ..
            } => {
                let rows: Vec<&str> = sections
                    .iter()
                    .flat_map(|s| s.rows.iter().map(|r| r.1.as_str()))
                    .collect();
                format!("list: {body} ({button}) [{}]", rows.join(" | "))
            }
            Outgoing::Media { kind, link, .. } => format!("{kind}: {link}"),
            Outgoing::Template { name, .. } => format!("template: {name}"),
        },
        Effect::SetName { name } => format!("name: {name}"),
        Effect::AddTag { tag } => format!("tag: +{tag}"),
        Effect::RemoveTag { tag } => format!("tag: -{tag}"),
        Effect::Action { action, purpose } => match purpose {
            Some(p) => format!("action: {} {p}", action.name()),
            None => format!("action: {}", action.name()),
        },
        Effect::BudgetExceeded { flow, step } => {
            format!("error: step budget exceeded at {flow}/{step}")
        }
    }
}

/// The choices (id, title) of the last interactive message in `effects`.
pub fn choices(effects: &[Effect]) -> Vec<(String, String)> {
    effects
        .iter()
        .rev()
        .find_map(|e| match e {
            Effect::Send {
                message: Outgoing::Buttons { buttons, .. },
            } => Some(buttons.clone()),
            Effect::Send {
                message: Outgoing::List { sections, .. },
            } => Some(
                sections
                    .iter()
                    .flat_map(|s| s.rows.iter().map(|r| (r.0.clone(), r.1.clone())))
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

/// A simulated conversation: one contact, a clock, the real engine.
pub struct Conversation<'a> {
    pub flows: &'a Flows,
    pub session: Option<Session>,
    pub contact: ContactView,
    pub now: u64,
    pub session_ttl: u64,
    /// Choices offered by the last interactive message.
    pub offered: Vec<(String, String)>,
    /// Every step run or stopped at so far.
    pub visited: HashSet<(usize, usize)>,
}

impl<'a> Conversation<'a> {
    pub fn new(flows: &'a Flows, contact: ContactView, session_ttl: Duration) -> Self {
        Conversation {
            flows,
            session: None,
            contact,
            now: 1_800_000_000,
            session_ttl: session_ttl.as_secs(),
            offered: Vec::new(),
            visited: HashSet::new(),
        }
    }

    /// Sends one input; returns the effects.
    pub fn input(&mut self, input: &Input) -> Vec<Effect> {
        let out = step(
            self.flows,
            self.session.take(),
            &self.contact,
            input,
            self.now,
            self.session_ttl,
        );
        self.session = out.session;
        self.contact = out.contact;
        self.visited.extend(out.visited);
        let offered = choices(&out.effects);
        if self.session.is_none() {
            // Nothing waits for a choice any more: old numbers mean nothing.
            self.offered.clear();
        } else if !out.effects.is_empty() {
            // The latest prompt decides: a question after buttons offers none.
            self.offered = offered;
        }
        out.effects
    }

    /// A tap on an offered choice, by title or id (case-insensitive), or a
    /// number (1-based) as in the terminal chat.
    pub fn tap(&self, what: &str) -> Option<Input> {
        let want = crate::domain::text::normalize(what);
        let by_number = what
            .trim()
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| self.offered.get(i));
        by_number
            .or_else(|| {
                self.offered.iter().find(|(id, title)| {
                    crate::domain::text::normalize(title) == want
                        || crate::domain::text::normalize(id) == want
                })
            })
            .map(|(id, title)| Input::Choice {
                id: id.clone(),
                title: title.clone(),
            })
    }

    /// Moves the clock and fires what is due.
    pub fn wait(&mut self, d: Duration) -> Vec<Effect> {
        self.now = self.now.saturating_add(d.as_secs());
        self.input(&Input::Tick)
    }
}

/// Runs one transcript.
pub fn run(flows: &Flows, file: &Path, t: &Transcript, session_ttl: Duration) -> Report {
    let contact = ContactView {
        name: t.contact.name.clone(),
        tags: t.contact.tags.iter().cloned().collect(),
    };
    let mut conv = Conversation::new(flows, contact, session_ttl);
    let fail = |msg: String| Report {
        file: file.to_path_buf(),
        name: t.name.clone(),
        visited: HashSet::new(),
        failure: Some(msg),
    };
    for (i, turn) in t.turns.iter().enumerate() {
        let n = i + 1;
        let kinds = usize::from(turn.send.is_some())
            + usize::from(turn.tap.is_some())
            + usize::from(turn.wait.is_some())
            + usize::from(turn.send_image.is_some());
        if kinds != 1 {
            return fail(format!(
                "turn {n}: expected exactly one of send, tap, wait, send_image"
            ));
        }
        let (said, effects) = if let Some(text) = &turn.send {
            (
                format!("send: {text}"),
                conv.input(&Input::Text(text.clone())),
            )
        } else if let Some(what) = &turn.tap {
            let Some(input) = conv.tap(what) else {
                let offered: Vec<&str> = conv.offered.iter().map(|(_, t)| t.as_str()).collect();
                return fail(format!(
                    "turn {n}: tap {what:?}: no such choice (offered: {offered:?})"
                ));
            };
            (format!("tap: {what}"), conv.input(&input))
        } else if let Some(d) = &turn.wait {
            let Ok(d) = humantime::parse_duration(d) else {
                return fail(format!("turn {n}: wait {d:?} is not a duration like 30m"));
            };
            (
                format!("wait: {}", humantime::format_duration(d)),
                conv.wait(d),
            )
        } else {
            ("send_image".to_owned(), conv.input(&Input::Unreadable))
        };
        let got: Vec<String> = effects.iter().map(describe).collect();
        if got != turn.expect {
            let mut msg = format!("turn {n} ({said}): the answers differ\n");
            for line in &turn.expect {
                if !got.contains(line) {
                    let _ = writeln!(msg, "  - expected: {line}");
                }
            }
            for line in &got {
                if !turn.expect.contains(line) {
                    let _ = writeln!(msg, "  + got:      {line}");
                }
            }
            if msg.lines().count() == 1 {
                let _ = writeln!(msg, "  (same answers, in another order: {got:?})");
            }
            return fail(msg);
        }
    }
    Report {
        file: file.to_path_buf(),
        name: t.name.clone(),
        visited: conv.visited,
        failure: None,
    }
}

/// Steps (`flow/step`) that no passing transcript reaches.
pub fn uncovered(flows: &Flows, reports: &[Report]) -> Vec<String> {
    let seen: HashSet<(usize, usize)> = reports
        .iter()
        .flat_map(|r| r.visited.iter().copied())
        .collect();
    let mut out = Vec::new();
    for (f, flow) in flows.flows.iter().enumerate() {
        for (s, step) in flow.steps.iter().enumerate() {
            if !seen.contains(&(f, s)) {
                out.push(format!("{}/{}", flow.id, step.id));
            }
        }
    }
    out
}

/// Runs every transcript in `dir` (`*.yaml`); a file that cannot be read
/// is a failed report.
pub fn run_dir(flows: &Flows, dir: &Path, session_ttl: Duration) -> Vec<Report> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let parsed = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|s| {
                    serde_saphyr::from_str::<Transcript>(&s).map_err(|e| first_line(&e.to_string()))
                });
            match parsed {
                Ok(t) => run(flows, &path, &t, session_ttl),
                Err(e) => Report {
                    name: path.display().to_string(),
                    file: path,
                    visited: HashSet::new(),
                    failure: Some(format!("cannot read the transcript: {e}")),
                },
            }
        })
        .collect()
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).to_owned()
}
