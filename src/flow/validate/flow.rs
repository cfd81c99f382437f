//! One flow file: its triggers (keywords, regular expressions, reply ids,
//! the default flag), its step ids, its steps in order, and which steps
//! its first step can reach.

use std::collections::HashMap;
use std::path::Path;

use regex::Regex;

use super::compiler::{Compiler, last_line, valid_id};
use super::graph::{Resolver, targets};
use super::limits;
use crate::domain::text::normalize;
use crate::flow::model::{FlowFile, Spanned, Trigger};
use crate::flow::{FlowIdx, Step, Target};

/// Most steps one flow file may have.
const MAX_STEPS: usize = 1000;

impl Compiler {
    pub(super) fn flow(&mut self, idx: FlowIdx, path: &Path, f: &FlowFile) {
        for t in &f.triggers {
            self.trigger(idx, path, f, t);
        }
        if let Some(fb) = &f.fallback {
            self.flows[idx].fallback = self.text(path, fb, limits::TEXT, "fallback text");
        }
        // Steps.
        if f.steps.is_empty() {
            self.err(path, &f.id, format!("flow `{}` has no steps", f.id.value));
            return;
        }
        if f.steps.len() > MAX_STEPS {
            self.err(
                path,
                &f.id,
                format!(
                    "flow `{}` has {} steps; at most {MAX_STEPS}",
                    f.id.value,
                    f.steps.len()
                ),
            );
            return;
        }
        let index = self.step_index(path, f);
        let flow_ids = self.by_id.clone();
        let resolver = Resolver {
            flow_id: &f.id.value,
            steps: &index,
            flows: &flow_ids,
        };
        let mut steps = Vec::with_capacity(f.steps.len());
        for (i, s) in f.steps.iter().enumerate() {
            let fallthrough = if i + 1 < f.steps.len() {
                Target::Step(i + 1)
            } else {
                Target::End
            };
            steps.push(self.step(path, &resolver, s, fallthrough));
        }
        self.check_reachable(path, f, &steps);
        self.flows[idx].steps = steps;
    }

    fn trigger(&mut self, idx: FlowIdx, path: &Path, f: &FlowFile, t: &Trigger) {
        let kinds = usize::from(t.keywords.is_some())
            + usize::from(t.regex.is_some())
            + usize::from(t.replies.is_some())
            + usize::from(t.default.is_some());
        if kinds != 1 {
            self.err(path, &f.id, format!("flow `{}`: each trigger takes exactly one of `keywords`, `regex`, `replies`, `default`; found {kinds}", f.id.value));
        }
        for k in t.keywords.iter().flatten() {
            self.keyword(idx, path, k);
        }
        if let Some(r) = &t.regex {
            match Regex::new(&format!("(?i){}", r.value)) {
                Ok(re) => self.regexes.push((re, idx)),
                Err(e) => self.err(
                    path,
                    r,
                    format!("invalid regular expression: {}", last_line(&e.to_string())),
                ),
            }
        }
        for r in t.replies.iter().flatten() {
            if let Some(&other) = self.replies.get(&r.value)
                && other != idx
            {
                let other = self.flows[other].id.clone();
                self.err(
                    path,
                    r,
                    format!(
                        "reply id `{}` is already claimed by flow `{other}`",
                        r.value
                    ),
                );
            }
            self.replies.insert(r.value.clone(), idx);
        }
        if let Some(d) = &t.default
            && d.value
        {
            match self.default {
                Some(other) if other != idx => {
                    let other = self.flows[other].id.clone();
                    self.err(
                        path,
                        d,
                        format!("a second default flow: `{other}` is already the default"),
                    );
                }
                _ => self.default = Some(idx),
            }
        }
    }

    /// A whole-message keyword: not empty, not a privacy command, not
    /// another flow's.
    fn keyword(&mut self, idx: FlowIdx, path: &Path, k: &Spanned<String>) {
        let key = normalize(&k.value);
        if key.is_empty() {
            self.err(path, k, "empty keyword: expected a word or phrase");
            return;
        }
        if let Some(command) = crate::privacy::keywords::is_builtin(&key) {
            self.err(
                path,
                k,
                format!(
                    "keyword {:?} belongs to the built-in privacy command {}: it is answered before any flow, so no flow can claim it",
                    k.value,
                    command.name()
                ),
            );
            return;
        }
        match self.keywords.get(&key) {
            Some(&other) if other != idx => {
                let other = self.flows[other].id.clone();
                self.err(
                    path,
                    k,
                    format!("keyword {:?} is already claimed by flow `{other}`", k.value),
                );
            }
            _ => {
                self.keywords.insert(key, idx);
            }
        }
    }

    /// Step id → position, with invalid and duplicate ids reported.
    fn step_index<'f>(&mut self, path: &Path, f: &'f FlowFile) -> HashMap<&'f str, usize> {
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, s) in f.steps.iter().enumerate() {
            if !valid_id(&s.id.value) {
                self.err(
                    path,
                    &s.id,
                    format!(
                        "step id {:?} is not valid: expected letters, digits, `_` or `-`",
                        s.id.value
                    ),
                );
            }
            if index.insert(s.id.value.as_str(), i).is_some() {
                self.err(
                    path,
                    &s.id,
                    format!(
                        "duplicate step id `{}` in flow `{}`",
                        s.id.value, f.id.value
                    ),
                );
            }
        }
        index
    }

    /// Every step must be reachable from the first, inside the flow.
    fn check_reachable(&mut self, path: &Path, f: &FlowFile, steps: &[Step]) {
        let mut seen = vec![false; steps.len()];
        let mut todo = vec![0usize];
        while let Some(i) = todo.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            for t in targets(&steps[i]) {
                if let Target::Step(j) = t
                    && j < steps.len()
                {
                    todo.push(j);
                }
            }
        }
        for (i, s) in f.steps.iter().enumerate() {
            if !seen[i] {
                self.err(
                    path,
                    &s.id,
                    format!(
                        "step `{}` is unreachable: no step of flow `{}` leads to it",
                        s.id.value, f.id.value
                    ),
                );
            }
        }
    }
}
