//! The flow engine: a pure function of (flows, session, contact, input,
//! now) to (new session, effects). No I/O, no clock, no runtime: the
//! caller passes the time in and carries the effects out.
//!
//! One input runs until the next waiting step (buttons, list, ask) or the
//! end of the flow, within a step budget so that no flow can hang a worker.
//!
//! Precedence for an inbound message:
//! 1. At an `ask` step, a text (or a tap's title) is the answer: keywords
//!    do not interrupt a question.
//! 2. At a buttons or list step, a reply with one of its ids, or a text
//!    equal to a choice's title or id, follows that choice.
//! 3. Otherwise a trigger (reply id, keyword, regex) starts its flow.
//! 4. Otherwise a buttons or list step shows its choices again.
//! 5. With no session, the triggered flow or else the default flow starts.
//!
//! Privacy commands (STOP, …) are handled before the engine, by the caller.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::text::Values;
use super::{Action, Check, Flow, FlowIdx, Flows, Kind, MediaKind, StepIdx, Subject, Target, Test};
use crate::domain::inbound::Input;
use crate::domain::outbound::{ListSection, Outgoing};
use crate::domain::profile::{ContactView, Session};
use crate::domain::text::normalize;

/// Most steps one input may run.
pub const STEP_BUDGET: usize = 100;

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    Send {
        message: Outgoing,
    },
    SetName {
        name: String,
    },
    AddTag {
        tag: String,
    },
    RemoveTag {
        tag: String,
    },
    Action {
        action: Action,
        purpose: Option<String>,
    },
    /// The step budget ran out (a bug in the flows; logged by the caller).
    BudgetExceeded {
        flow: String,
        step: String,
    },
}

/// The engine's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub session: Option<Session>,
    pub contact: ContactView,
    pub effects: Vec<Effect>,
    /// The steps this input ran or stopped at, in order (for coverage).
    pub visited: Vec<(FlowIdx, StepIdx)>,
    /// A flow that reached its end with this input: its id and the
    /// variables it collected (the `flow.completed` event).
    pub completed: Option<(String, BTreeMap<String, String>)>,
}

struct Run<'a> {
    flows: &'a Flows,
    visited: Vec<(FlowIdx, StepIdx)>,
    vars: BTreeMap<String, String>,
    contact: ContactView,
    effects: Vec<Effect>,
    now: u64,
    completed: Option<(String, BTreeMap<String, String>)>,
}

impl Values for Run<'_> {
    fn contact_name(&self) -> Option<&str> {
        self.contact.name.as_deref()
    }
    fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }
}

/// Runs one input. `session_ttl` is in seconds.
pub fn step(
    flows: &Flows,
    session: Option<Session>,
    contact: &ContactView,
    input: &Input,
    now: u64,
    session_ttl: u64,
) -> Outcome {
    // An idle session starts over; a session whose flow or step vanished
    // in a reload starts its flow (or the default flow) from the top.
    let session = session.filter(|s| s.last_active.saturating_add(session_ttl) > now);
    let position = session.as_ref().and_then(|s| locate(flows, s));
    let mut run = Run {
        flows,
        visited: Vec::new(),
        vars: session.as_ref().map(|s| s.vars.clone()).unwrap_or_default(),
        contact: contact.clone(),
        effects: Vec::new(),
        now,
        completed: None,
    };
    let stale = session.is_some() && position.is_none();
    let retries = session.as_ref().map_or(0, |s| s.retries);
    let deadline = session.as_ref().and_then(|s| s.deadline);
    let restart_flow = session
        .as_ref()
        .filter(|_| stale)
        .and_then(|s| flows.by_id.get(&s.flow).copied());

    let (flow, target): (FlowIdx, Target) = match (position, input) {
        (Some((f, s)), Input::Tick) => match (deadline, flows.flows[f].steps[s].timeout) {
            (Some(d), Some((_, t))) if d <= now => (f, t),
            _ => return unchanged(session, run),
        },
        (None, Input::Tick) => return unchanged(None, run),
        (Some((f, s)), input) => match on_waiting(&mut run, f, s, retries, input) {
            Waiting::Go(t) => (f, t),
            Waiting::Stay(retries) => {
                let mut session = session;
                if let Some(sess) = session.as_mut() {
                    sess.retries = retries;
                    sess.last_active = now;
                    sess.vars = run.vars.clone();
                }
                return Outcome {
                    session,
                    contact: run.contact,
                    effects: run.effects,
                    visited: run.visited,
                    completed: run.completed,
                };
            }
            Waiting::NotMine => {
                trigger(flows, input).map_or((f, Target::Step(s)), |g| (g, Target::Step(0)))
            }
        },
        (None, input) => {
            let flow = trigger(flows, input)
                .or(restart_flow)
                .unwrap_or(flows.default);
            (flow, Target::Step(0))
        }
    };
    let session = run_from(&mut run, flow, target);
    Outcome {
        session,
        contact: run.contact,
        effects: run.effects,
        visited: run.visited,
        completed: run.completed,
    }
}

fn unchanged(session: Option<Session>, run: Run<'_>) -> Outcome {
    Outcome {
        session,
        contact: run.contact,
        effects: run.effects,
        visited: run.visited,
        completed: run.completed,
    }
}

fn locate(flows: &Flows, s: &Session) -> Option<(FlowIdx, StepIdx)> {
    let f = *flows.by_id.get(&s.flow)?;
    let st = flows.flows[f].steps.iter().position(|x| x.id == s.step)?;
    flows.flows[f].steps[st].waits().then_some((f, st))
}

/// A flow that the input triggers, if any.
fn trigger(flows: &Flows, input: &Input) -> Option<FlowIdx> {
    match input {
        Input::Choice { id, title } => flows
            .replies
            .get(id)
            .copied()
            .or_else(|| flows.keywords.get(&normalize(title)).copied()),
        Input::Text(text) => flows.keywords.get(&normalize(text)).copied().or_else(|| {
            flows
                .regexes
                .iter()
                .find(|(re, _)| re.is_match(text))
                .map(|(_, f)| *f)
        }),
        Input::Unreadable | Input::Tick => None,
    }
}

enum Waiting {
    /// Leave the waiting step for this target.
    Go(Target),
    /// Stay at the step (with this retry count), effects already emitted.
    Stay(u32),
    /// The input is not an answer to this step.
    NotMine,
}

fn on_waiting(run: &mut Run<'_>, f: FlowIdx, s: StepIdx, retries: u32, input: &Input) -> Waiting {
    let flow = &run.flows.flows[f];
    let step = &flow.steps[s];
    if *input == Input::Unreadable {
        if let Some(fb) = &flow.fallback {
            let body = fb.render(run);
            run.effects.push(send_text(body));
        }
        prompt(run, f, s);
        return Waiting::Stay(retries);
    }
    match (&step.kind, input) {
        (
            Kind::Ask {
                save_as,
                check,
                retry,
                max_retries,
                on_fail,
                ..
            },
            Input::Text(answer) | Input::Choice { title: answer, .. },
        ) => {
            let answer = answer.trim();
            if check.as_ref().is_none_or(|c| accepts(c, answer)) {
                if let Some(v) = save_as {
                    run.vars.insert(v.clone(), answer.to_owned());
                }
                Waiting::Go(step.next)
            } else if retries >= *max_retries {
                Waiting::Go(*on_fail)
            } else {
                match retry {
                    Some(r) => {
                        let body = r.render(run);
                        run.effects.push(send_text(body));
                    }
                    None => prompt(run, f, s),
                }
                Waiting::Stay(retries + 1)
            }
        }
        (Kind::Buttons { .. } | Kind::List { .. }, _) => {
            let all = choices_of(step);
            let chosen = match input {
                Input::Choice { id, .. } => all.iter().find(|c| &c.id == id),
                Input::Text(t) => {
                    let t = normalize(t);
                    all.iter()
                        .find(|c| normalize(&c.title) == t || normalize(&c.id) == t)
                }
                _ => None,
            };
            match chosen {
                Some(c) => Waiting::Go(c.target),
                None if trigger(run.flows, input).is_some() => Waiting::NotMine,
                None => {
                    prompt(run, f, s);
                    Waiting::Stay(retries)
                }
            }
        }
        _ => Waiting::NotMine,
    }
}

fn choices_of(step: &super::Step) -> Vec<&super::Choice> {
    match &step.kind {
        Kind::Buttons { choices, .. } => choices.iter().collect(),
        Kind::List { sections, .. } => sections.iter().flat_map(|(_, r)| r.iter()).collect(),
        _ => Vec::new(),
    }
}

fn accepts(check: &Check, answer: &str) -> bool {
    match check {
        Check::Regex(re) => re.is_match(answer),
        Check::Choice(options) => options.contains(&normalize(answer)),
        Check::Number { min, max } => answer.replace(',', ".").parse::<f64>().is_ok_and(|n| {
            n.is_finite() && min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m)
        }),
        Check::Email => {
            let mut parts = answer.split('@');
            matches!(
                (parts.next(), parts.next(), parts.next()),
                (Some(user), Some(domain), None)
                    if !user.is_empty() && domain.contains('.') && !domain.starts_with('.')
                        && !domain.ends_with('.') && !answer.contains(char::is_whitespace)
            )
        }
        Check::MinLength(n) => answer.chars().count() >= *n,
    }
}

fn send_text(body: String) -> Effect {
    Effect::Send {
        message: Outgoing::Text {
            body,
            preview_url: false,
        },
    }
}

/// Sends a waiting step's message (its question, buttons or list).
fn prompt(run: &mut Run<'_>, f: FlowIdx, s: StepIdx) {
    let step = &run.flows.flows[f].steps[s];
    let message = match &step.kind {
        Kind::Ask { text, .. } => Outgoing::Text {
            body: text.render(run),
            preview_url: false,
        },
        Kind::Buttons {
            text,
            header,
            footer,
            choices,
        } => Outgoing::Buttons {
            body: text.render(run),
            header: header.as_ref().map(|h| h.render(run)),
            footer: footer.as_ref().map(|h| h.render(run)),
            buttons: choices
                .iter()
                .map(|c| (c.id.clone(), c.title.clone()))
                .collect(),
        },
        Kind::List {
            text,
            header,
            footer,
            button,
            sections,
        } => Outgoing::List {
            body: text.render(run),
            header: header.as_ref().map(|h| h.render(run)),
            footer: footer.as_ref().map(|h| h.render(run)),
            button: button.clone(),
            sections: sections
                .iter()
                .map(|(title, rows)| ListSection {
                    title: title.clone(),
                    rows: rows
                        .iter()
                        .map(|c| (c.id.clone(), c.title.clone(), c.description.clone()))
                        .collect(),
                })
                .collect(),
        },
        _ => return,
    };
    run.effects.push(Effect::Send { message });
}

/// Runs steps from `target` until a waiting step or the end.
fn run_from(run: &mut Run<'_>, mut flow: FlowIdx, mut target: Target) -> Option<Session> {
    for _ in 0..STEP_BUDGET {
        let s = match target {
            Target::End => {
                run.completed = Some((run.flows.flows[flow].id.clone(), run.vars.clone()));
                return None;
            }
            Target::Flow(f) => {
                flow = f;
                0
            }
            Target::Step(s) => s,
        };
        let f: &Flow = &run.flows.flows[flow];
        let step = f.steps.get(s)?;
        run.visited.push((flow, s));
        if step.waits() {
            prompt(run, flow, s);
            return Some(Session {
                flow: f.id.clone(),
                step: step.id.clone(),
                vars: run.vars.clone(),
                retries: 0,
                deadline: step
                    .timeout
                    .map(|(d, _)| run.now.saturating_add(d.as_secs())),
                last_active: run.now,
            });
        }
        target = execute(run, step);
    }
    let f = &run.flows.flows[flow];
    let step_id = match target {
        Target::Step(s) => f.steps.get(s).map(|x| x.id.clone()).unwrap_or_default(),
        _ => String::new(),
    };
    run.effects.push(Effect::BudgetExceeded {
        flow: f.id.clone(),
        step: step_id,
    });
    None
}

/// Executes a non-waiting step; returns where to go next.
fn execute(run: &mut Run<'_>, step: &super::Step) -> Target {
    match &step.kind {
        Kind::Say { text, preview_url } => {
            let body = text.render(run);
            run.effects.push(Effect::Send {
                message: Outgoing::Text {
                    body,
                    preview_url: *preview_url,
                },
            });
        }
        Kind::Media {
            kind,
            link,
            caption,
            filename,
        } => {
            let caption = caption.as_ref().map(|c| c.render(run));
            run.effects.push(Effect::Send {
                message: Outgoing::Media {
                    kind: match kind {
                        MediaKind::Image => "image",
                        MediaKind::Document => "document",
                    }
                    .to_owned(),
                    link: link.clone(),
                    caption,
                    filename: filename.clone(),
                },
            });
        }
        Kind::Template {
            name,
            language,
            params,
            marketing,
        } => {
            let params = params.iter().map(|p| p.render(run)).collect();
            run.effects.push(Effect::Send {
                message: Outgoing::Template {
                    name: name.clone(),
                    language: language.clone(),
                    params,
                    marketing: *marketing,
                },
            });
        }
        Kind::Branch { cases, otherwise } => {
            for (subject, test, target) in cases {
                if holds(run, subject, test) {
                    return *target;
                }
            }
            return *otherwise;
        }
        Kind::Set {
            vars,
            add_tags,
            remove_tags,
            name,
        } => {
            for (k, v) in vars {
                let value = v.render(run);
                run.vars.insert(k.clone(), value);
            }
            for t in add_tags {
                if run.contact.tags.insert(t.clone()) {
                    run.effects.push(Effect::AddTag { tag: t.clone() });
                }
            }
            for t in remove_tags {
                if run.contact.tags.remove(t) {
                    run.effects.push(Effect::RemoveTag { tag: t.clone() });
                }
            }
            if let Some(n) = name {
                let n = n.render(run).trim().to_owned();
                if !n.is_empty() {
                    run.contact.name = Some(n.clone());
                    run.effects.push(Effect::SetName { name: n });
                }
            }
        }
        Kind::Action { action, purpose } => {
            run.effects.push(Effect::Action {
                action: *action,
                purpose: purpose.clone(),
            });
        }
        Kind::Jump | Kind::Buttons { .. } | Kind::List { .. } | Kind::Ask { .. } => {}
    }
    step.next
}

fn holds(run: &Run<'_>, subject: &Subject, test: &Test) -> bool {
    let value = match subject {
        Subject::Var(v) => run.vars.get(v).map(String::as_str),
        Subject::ContactName => run.contact.name.as_deref(),
        Subject::Tag => {
            return matches!(test, Test::Has(t) if run.contact.tags.contains(t));
        }
    };
    match test {
        Test::Equals(x) => value.is_some_and(|v| normalize(v) == normalize(x)),
        Test::NotEquals(x) => value.is_none_or(|v| normalize(v) != normalize(x)),
        Test::IsSet(want) => value.is_some_and(|v| !v.is_empty()) == *want,
        Test::Has(_) => false,
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
