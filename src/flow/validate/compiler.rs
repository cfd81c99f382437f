//! The state of one compilation: what the files declared so far, the
//! errors found, and the passes over the files in order.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use regex::Regex;

use super::FlowError;
use crate::flow::model::{FlowFile, Spanned};
use crate::flow::text::Text;
use crate::flow::{Flow, FlowIdx, Flows, PrivacyTexts};

#[derive(Default)]
pub(super) struct Compiler {
    pub(super) errors: Vec<FlowError>,
    pub(super) flows: Vec<Flow>,
    pub(super) by_id: HashMap<String, FlowIdx>,
    pub(super) keywords: HashMap<String, FlowIdx>,
    pub(super) regexes: Vec<(Regex, FlowIdx)>,
    pub(super) replies: HashMap<String, FlowIdx>,
    pub(super) default: Option<FlowIdx>,
    /// Variables some step sets.
    pub(super) set_vars: HashSet<String>,
    /// Variables read, with where.
    used_vars: Vec<(String, PathBuf, u64, u64)>,
    pub(super) privacy: crate::privacy::keywords::Extra,
    pub(super) privacy_texts: PrivacyTexts,
    /// Which file set each privacy text.
    pub(super) privacy_text_files: HashMap<&'static str, PathBuf>,
}

/// Where a value starts in its file: (line, column).
fn at<T>(s: &Spanned<T>) -> (u64, u64) {
    (s.referenced.line(), s.referenced.column())
}

impl Compiler {
    /// Records a problem at `span`.
    pub(super) fn err<T>(&mut self, file: &Path, span: &Spanned<T>, message: impl Into<String>) {
        let (line, column) = at(span);
        self.errors.push(FlowError {
            file: file.to_path_buf(),
            line,
            column,
            message: message.into(),
        });
    }

    /// Records that the value at `span` reads `vars.{var}`.
    pub(super) fn use_var<T>(&mut self, var: &str, file: &Path, span: &Spanned<T>) {
        let (line, column) = at(span);
        self.used_vars
            .push((var.to_owned(), file.to_path_buf(), line, column));
    }

    pub(super) fn run(&mut self, files: &[(PathBuf, FlowFile)]) {
        // Pass 1: flow ids, so that goto_flow can point anywhere.
        let mut order = Vec::new();
        for (path, f) in files {
            let id = f.id.value.clone();
            if !valid_id(&id) {
                self.err(
                    path,
                    &f.id,
                    format!("flow id {id:?} is not valid: expected letters, digits, `_` or `-`"),
                );
            }
            if self.by_id.contains_key(&id) {
                self.err(
                    path,
                    &f.id,
                    format!("duplicate flow id `{id}`: another file already defines it"),
                );
                continue;
            }
            self.by_id.insert(id.clone(), self.flows.len());
            self.flows.push(Flow {
                id,
                fallback: None,
                steps: Vec::new(),
            });
            order.push((path, f));
        }
        // Pass 2: steps, triggers, transitions.
        for (idx, (path, f)) in order.iter().enumerate() {
            self.flow(idx, path, f);
        }
        self.check_vars();
        for (path, f) in &order {
            if let Some(p) = &f.privacy {
                self.privacy(path, p);
            }
        }
        if self.errors.is_empty() {
            self.check_loops(&order);
        }
    }

    /// Every variable read must be set by some step (of any flow).
    fn check_vars(&mut self) {
        for (var, file, line, column) in std::mem::take(&mut self.used_vars) {
            if !self.set_vars.contains(&var) {
                self.errors.push(FlowError {
                    file,
                    line,
                    column,
                    message: format!(
                        "variable `vars.{var}` is used but no step sets it (expected an `ask` with `save_as: {var}` or a `set` of `{var}`)"
                    ),
                });
            }
        }
    }

    pub(super) fn finish(self) -> Result<Flows, FlowError> {
        let default = self.default.ok_or_else(|| {
            FlowError::whole(
                "flows",
                "no default flow: add `- default: true` to the triggers of the flow that greets a new contact",
            )
        })?;
        Ok(Flows {
            flows: self.flows,
            by_id: self.by_id,
            keywords: self.keywords,
            privacy: self.privacy,
            privacy_texts: self.privacy_texts,
            regexes: self.regexes,
            replies: self.replies,
            default,
        })
    }

    /// Reports a text longer than `max` characters.
    pub(super) fn at_most(&mut self, file: &Path, s: &Spanned<String>, max: usize, what: &str) {
        let n = s.value.chars().count();
        if n > max {
            self.err(
                file,
                s,
                format!("{what} is {n} characters; WhatsApp allows at most {max}"),
            );
        }
    }

    /// Parses a message text of at most `max` characters.
    pub(super) fn text(
        &mut self,
        file: &Path,
        s: &Spanned<String>,
        max: usize,
        what: &str,
    ) -> Option<Text> {
        self.at_most(file, s, max, what);
        match Text::parse(&s.value) {
            Ok(t) => {
                for v in t.vars() {
                    self.use_var(v, file, s);
                }
                Some(t)
            }
            Err(e) => {
                self.err(file, s, e);
                None
            }
        }
    }
}

/// A flow or step id: 1 to 64 letters, digits, `_` or `-`.
pub(super) fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The last line of a library's error message (regex errors draw a caret
/// picture above it).
pub(super) fn last_line(s: &str) -> String {
    s.lines().last().unwrap_or(s).trim().to_owned()
}
