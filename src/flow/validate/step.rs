//! One step: its shape (exactly one kind, keys that belong to another
//! kind), where it goes next, its timeout, and the kinds that send no
//! message of their own design (`ask`, `branch`, `set`, `action`, jumps).
//! The message kinds are in [`super::message`].

use std::path::Path;
use std::time::Duration;

use regex::Regex;

use super::compiler::{Compiler, last_line};
use super::graph::Resolver;
use super::limits;
use crate::domain::text::normalize;
use crate::flow::model::{Case, SetSpec, Spanned, StepSpec, ValidateSpec};
use crate::flow::text::{Text, valid_name};
use crate::flow::{Action, Check, Kind, Step, Subject, Target, Test};

impl Compiler {
    pub(super) fn step(
        &mut self,
        path: &Path,
        r: &Resolver<'_>,
        s: &StepSpec,
        fallthrough: Target,
    ) -> Step {
        self.check_shape(path, s);
        let next = match &s.next {
            Some(n) => self.resolve_step(path, r, n),
            None => fallthrough,
        };
        let timeout = s.timeout.as_ref().map(|t| {
            let d = match humantime::parse_duration(&t.value.after.value) {
                Ok(d) if d >= Duration::from_secs(1) => d,
                _ => {
                    self.err(
                        path,
                        &t.value.after,
                        format!(
                            "timeout `after: {}` is not a duration like 30s, 10m, 2h or 1d",
                            t.value.after.value
                        ),
                    );
                    Duration::from_secs(60)
                }
            };
            (d, self.resolve_step(path, r, &t.value.goto))
        });
        let header = s
            .header
            .as_ref()
            .and_then(|h| self.text(path, h, limits::HEADER, "header"));
        let footer = s
            .footer
            .as_ref()
            .and_then(|h| self.text(path, h, limits::FOOTER, "footer"));
        let kind = if let Some(say) = &s.say {
            self.say(path, r, s, say, header, footer)
        } else if let Some(ask) = &s.ask {
            self.ask(path, r, s, ask, next)
        } else if let Some(m) = &s.media {
            self.media(path, m)
        } else if let Some(t) = &s.template {
            self.template(path, t)
        } else if let Some(b) = &s.branch {
            self.branch(path, r, s, b, next)
        } else if let Some(set) = &s.set {
            self.set(path, set)
        } else if let Some(a) = &s.action {
            self.action(path, s, a)
        } else {
            let next = if let Some(g) = &s.goto {
                self.resolve_step(path, r, g)
            } else if let Some(g) = &s.goto_flow {
                self.resolve_flow(path, r, g)
            } else {
                Target::End
            };
            return Step {
                id: s.id.value.clone(),
                kind: Kind::Jump,
                next,
                timeout,
            };
        };
        Step {
            id: s.id.value.clone(),
            kind,
            next,
            timeout,
        }
    }

    /// Exactly one kind, and no key that belongs to another kind.
    fn check_shape(&mut self, path: &Path, s: &StepSpec) {
        let kinds: Vec<&str> = [
            ("say", s.say.is_some()),
            ("ask", s.ask.is_some()),
            ("media", s.media.is_some()),
            ("template", s.template.is_some()),
            ("branch", s.branch.is_some()),
            ("set", s.set.is_some()),
            ("goto", s.goto.is_some()),
            ("goto_flow", s.goto_flow.is_some()),
            ("end", s.end.is_some()),
            ("action", s.action.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, present)| present.then_some(k))
        .collect();
        let sid = &s.id.value;
        if kinds.len() != 1 {
            let found = if kinds.is_empty() {
                "none".to_owned()
            } else {
                kinds.join(", ")
            };
            self.err(path, &s.id, format!("step `{sid}` must have exactly one of say, ask, media, template, branch, set, goto, goto_flow, end, action; found {found}"));
        }
        let waiting = s.buttons.is_some() || s.list.is_some() || s.ask.is_some();
        if (s.buttons.is_some() || s.list.is_some()) && s.say.is_none() {
            self.err(
                path,
                &s.id,
                format!("step `{sid}`: `buttons` and `list` need a `say` text as the message body"),
            );
        }
        if s.buttons.is_some() && s.list.is_some() {
            self.err(
                path,
                &s.id,
                format!(
                    "step `{sid}` has both `buttons` and `list`; a message has one or the other"
                ),
            );
        }
        if !waiting && s.timeout.is_some() {
            self.err(path, &s.id, format!("step `{sid}` has a `timeout` but does not wait for an answer (only buttons, list and ask do)"));
        }
        if s.ask.is_none() {
            for (k, v) in [
                ("save_as", s.save_as.as_ref()),
                ("retry", s.retry.as_ref()),
                ("on_fail", s.on_fail.as_ref()),
            ] {
                if let Some(v) = v {
                    self.err(path, v, format!("`{k}` belongs to an `ask` step"));
                }
            }
        }
        if s.branch.is_none()
            && let Some(o) = &s.otherwise
        {
            self.err(path, o, "`else` belongs to a `branch` step");
        }
    }

    fn ask(
        &mut self,
        path: &Path,
        r: &Resolver<'_>,
        s: &StepSpec,
        ask: &Spanned<String>,
        next: Target,
    ) -> Kind {
        let text = self
            .text(path, ask, limits::TEXT, "question")
            .unwrap_or_else(|| Text::plain(""));
        let save_as = s.save_as.as_ref().map(|v| {
            if !valid_name(&v.value) {
                self.err(path, v, format!("variable name {:?} is not valid: expected letters, digits and `_`, starting with a letter", v.value));
            }
            self.set_vars.insert(v.value.clone());
            v.value.clone()
        });
        let check = s.validate.as_ref().and_then(|v| self.check(path, v));
        let retry = s
            .retry
            .as_ref()
            .and_then(|t| self.text(path, t, limits::TEXT, "retry text"));
        let on_fail = match &s.on_fail {
            Some(t) => self.resolve_step(path, r, t),
            None => next,
        };
        Kind::Ask {
            text,
            save_as,
            check,
            retry,
            max_retries: s.max_retries.unwrap_or(2),
            on_fail,
        }
    }

    /// How an `ask` answer is checked.
    fn check(&mut self, path: &Path, v: &Spanned<ValidateSpec>) -> Option<Check> {
        let x = &v.value;
        let n = usize::from(x.regex.is_some())
            + usize::from(x.choice.is_some())
            + usize::from(x.number.is_some())
            + usize::from(x.email.is_some())
            + usize::from(x.min_length.is_some());
        if n != 1 {
            self.err(path, v, format!("`validate` takes exactly one of regex, choice, number, email, min_length; found {n}"));
            return None;
        }
        if let Some(r) = &x.regex {
            return match Regex::new(&format!("^(?:{})$", r.value)) {
                Ok(re) => Some(Check::Regex(re)),
                Err(e) => {
                    self.err(
                        path,
                        r,
                        format!("invalid regular expression: {}", last_line(&e.to_string())),
                    );
                    None
                }
            };
        }
        if let Some(c) = &x.choice {
            return Some(Check::Choice(
                c.iter().map(|s| normalize(&s.value)).collect(),
            ));
        }
        if let Some(n) = &x.number {
            return Some(Check::Number {
                min: n.min,
                max: n.max,
            });
        }
        if x.email == Some(true) {
            return Some(Check::Email);
        }
        x.min_length.map(|m| Check::MinLength(m as usize))
    }

    fn branch(
        &mut self,
        path: &Path,
        r: &Resolver<'_>,
        s: &StepSpec,
        b: &Spanned<Vec<Case>>,
        next: Target,
    ) -> Kind {
        let mut cases = Vec::new();
        for case in &b.value {
            if let Some(case) = self.case(path, r, case) {
                cases.push(case);
            }
        }
        let otherwise = match &s.otherwise {
            Some(o) => self.resolve_step(path, r, o),
            None => next,
        };
        Kind::Branch { cases, otherwise }
    }

    /// One case of a `branch`; `None` when it cannot be read.
    fn case(
        &mut self,
        path: &Path,
        r: &Resolver<'_>,
        case: &Case,
    ) -> Option<(Subject, Test, Target)> {
        let subject = match case.subject.value.as_str() {
            "contact.name" => Subject::ContactName,
            "tag" => Subject::Tag,
            other => match other.strip_prefix("vars.") {
                Some(v) if valid_name(v) => {
                    self.use_var(v, path, &case.subject);
                    Subject::Var(v.to_owned())
                }
                _ => {
                    self.err(
                        path,
                        &case.subject,
                        format!("`if: {other}`: expected `vars.NAME`, `contact.name` or `tag`"),
                    );
                    return None;
                }
            },
        };
        let tests = [
            case.equals.as_ref().map(|v| Test::Equals(v.value.clone())),
            case.not_equals
                .as_ref()
                .map(|v| Test::NotEquals(v.value.clone())),
            case.is_set.map(Test::IsSet),
            case.has.as_ref().map(|v| Test::Has(v.value.clone())),
        ];
        let tests: Vec<Test> = tests.into_iter().flatten().collect();
        if tests.len() != 1 {
            self.err(
                path,
                &case.subject,
                "each case takes exactly one of `equals`, `not_equals`, `is_set`, `has`",
            );
            return None;
        }
        let test = tests.into_iter().next().unwrap_or(Test::IsSet(true));
        if (subject == Subject::Tag) != matches!(test, Test::Has(_)) {
            self.err(
                path,
                &case.subject,
                "`has: TAG` goes with `if: tag`, and `if: tag` takes `has`",
            );
        }
        let target = self.resolve_step(path, r, &case.goto);
        Some((subject, test, target))
    }

    fn set(&mut self, path: &Path, set: &Spanned<SetSpec>) -> Kind {
        let mut vars = Vec::new();
        for (k, v) in &set.value.vars {
            if !valid_name(k) {
                self.err(path, v, format!("variable name {k:?} is not valid"));
            }
            self.set_vars.insert(k.clone());
            if let Some(t) = self.text(path, v, limits::TEXT, "value") {
                vars.push((k.clone(), t));
            }
        }
        let mut name = None;
        for (k, v) in &set.value.contact {
            if k == "name" {
                name = self.text(path, v, 256, "contact name");
            } else {
                self.err(
                    path,
                    v,
                    format!("contact field `{k}` cannot be set by a flow: only `name`"),
                );
            }
        }
        let tags =
            |list: &[Spanned<String>]| list.iter().map(|t| t.value.clone()).collect::<Vec<_>>();
        Kind::Set {
            vars,
            add_tags: tags(&set.value.add_tags),
            remove_tags: tags(&set.value.remove_tags),
            name,
        }
    }

    fn action(&mut self, path: &Path, s: &StepSpec, a: &Spanned<String>) -> Kind {
        let action = match a.value.as_str() {
            "handoff" => Action::Handoff,
            "opt_in" => Action::OptIn,
            "opt_out" => Action::OptOut,
            "export" => Action::Export,
            "erase" => Action::Erase,
            "update_name" => Action::UpdateName,
            other => {
                self.err(path, a, format!("unknown action `{other}`: expected handoff, opt_in, opt_out, export, erase or update_name"));
                Action::Handoff
            }
        };
        if matches!(action, Action::OptIn | Action::OptOut) && s.purpose.is_none() {
            self.err(
                path,
                a,
                format!("`action: {}` needs a `purpose` (e.g. marketing)", a.value),
            );
        }
        Kind::Action {
            action,
            purpose: s.purpose.as_ref().map(|p| p.value.clone()),
        }
    }
}
