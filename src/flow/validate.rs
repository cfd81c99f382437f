//! Loads a folder of flow files, reports every error (not only the first)
//! as `file:line:col: message`, and compiles the files into [`Flows`].
//!
//! Checks: YAML syntax and unknown keys; duplicate flow or step ids;
//! unknown steps and flows referenced; exactly one kind per step; every
//! WhatsApp limit that can be checked at load (buttons, lists, text
//! lengths); placeholders; variables used but never set; keywords claimed
//! by two flows; invalid regular expressions; a missing or second default
//! flow; unreachable steps; loops with no waiting step. It never panics.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;

use super::model::{self, FlowFile, Spanned};
use super::text::{Text, valid_name};
use super::{
    Action, Check, Choice, Flow, FlowIdx, Flows, Kind, MediaKind, Step, Subject, Target, Test,
};
use crate::domain::text::normalize;

/// WhatsApp's limits (Meta's interactive and text message references).
pub mod limits {
    pub const TEXT: usize = 4096;
    pub const BUTTON_BODY: usize = 1024;
    pub const BUTTONS: usize = 3;
    pub const BUTTON_TITLE: usize = 20;
    pub const BUTTON_ID: usize = 256;
    pub const HEADER: usize = 60;
    pub const FOOTER: usize = 60;
    pub const LIST_ROWS: usize = 10;
    pub const LIST_SECTIONS: usize = 10;
    pub const LIST_BUTTON: usize = 20;
    pub const SECTION_TITLE: usize = 24;
    pub const ROW_TITLE: usize = 24;
    pub const ROW_DESCRIPTION: usize = 72;
    pub const ROW_ID: usize = 200;
    pub const CAPTION: usize = 1024;
    pub const TEMPLATE_NAME: usize = 512;
}

/// Most steps one flow file may have.
const MAX_STEPS: usize = 1000;

/// One problem in a flow file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem concerns the whole folder.
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

/// Loads and checks every `*.yaml` / `*.yml` file directly in `dir`.
pub fn load_dir(dir: &Path) -> Result<Flows, Vec<FlowError>> {
    let folder_error = |message: String| FlowError {
        file: dir.to_path_buf(),
        line: 0,
        column: 0,
        message,
    };
    let entries = std::fs::read_dir(dir)
        .map_err(|e| vec![folder_error(format!("cannot read the flows folder: {e}"))])?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|x| {
                    x.eq_ignore_ascii_case("yaml") || x.eq_ignore_ascii_case("yml")
                })
        })
        .collect();
    paths.sort();
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => sources.push((path, text)),
            Err(e) => errors.push(FlowError {
                file: path,
                line: 0,
                column: 0,
                message: format!("cannot read the file: {e}"),
            }),
        }
    }
    match compile(&sources) {
        Ok(flows) if errors.is_empty() => Ok(flows),
        Ok(_) => Err(errors),
        Err(more) => {
            errors.extend(more);
            Err(errors)
        }
    }
}

/// Checks and compiles flow files given as (path, content).
pub fn compile(sources: &[(PathBuf, String)]) -> Result<Flows, Vec<FlowError>> {
    let mut c = Compiler::default();
    let mut files = Vec::new();
    for (path, text) in sources {
        match serde_saphyr::from_str::<FlowFile>(text) {
            Ok(f) => files.push((path.clone(), f)),
            Err(e) => {
                let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
                c.errors.push(FlowError {
                    file: path.clone(),
                    line,
                    column,
                    message: yaml_message(&e),
                });
            }
        }
    }
    if sources.is_empty() {
        c.errors.push(FlowError {
            file: PathBuf::from("flows"),
            line: 0,
            column: 0,
            message: "no flow files (*.yaml) found".into(),
        });
    }
    c.run(&files);
    if c.errors.is_empty() {
        c.finish().map_err(|e| vec![e])
    } else {
        let mut errors = c.errors;
        errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        Err(errors)
    }
}

/// serde-saphyr's message without its own position and snippet.
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let full = e.to_string();
    let mut m = full.lines().next().unwrap_or("invalid YAML").trim();
    m = m.strip_prefix("error:").unwrap_or(m).trim_start();
    if m.starts_with("line ")
        && let Some(i) = m.find(": ")
    {
        m = &m[i + 2..];
    }
    if m.is_empty() {
        "invalid YAML".to_owned()
    } else {
        m.to_owned()
    }
}

#[derive(Default)]
struct Compiler {
    errors: Vec<FlowError>,
    flows: Vec<Flow>,
    by_id: HashMap<String, FlowIdx>,
    keywords: HashMap<String, FlowIdx>,
    regexes: Vec<(Regex, FlowIdx)>,
    replies: HashMap<String, FlowIdx>,
    default: Option<FlowIdx>,
    /// Variables some step sets.
    set_vars: HashSet<String>,
    /// Variables read, with where.
    used_vars: Vec<(String, PathBuf, u64, u64)>,
    privacy: crate::privacy::keywords::Extra,
    privacy_texts: super::PrivacyTexts,
    /// Which file set each privacy text.
    privacy_text_files: HashMap<&'static str, PathBuf>,
}

fn at<T>(s: &Spanned<T>) -> (u64, u64) {
    (s.referenced.line(), s.referenced.column())
}

impl Compiler {
    fn err<T>(&mut self, file: &Path, span: &Spanned<T>, message: impl Into<String>) {
        let (line, column) = at(span);
        self.errors.push(FlowError {
            file: file.to_path_buf(),
            line,
            column,
            message: message.into(),
        });
    }

    fn run(&mut self, files: &[(PathBuf, FlowFile)]) {
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
        for (path, f) in &order {
            if let Some(p) = &f.privacy {
                self.privacy(path, p);
            }
        }
        if self.errors.is_empty() {
            self.check_loops(&order);
        }
    }

    /// `privacy:`: words in other languages for the built-in commands, and
    /// their answers reworded. A word may not mean two commands, nor be a
    /// flow's keyword (it would never reach the flow).
    fn privacy(&mut self, path: &Path, p: &super::model::PrivacySpec) {
        use crate::privacy::keywords::{Command, is_builtin};
        let k = &p.keywords;
        let t = &p.texts;
        for (command, words, text) in [
            (Command::OptOut, &k.opt_out, &t.opt_out),
            (Command::OptIn, &k.opt_in, &t.opt_in),
            (Command::Help, &k.help, &t.help),
            (Command::Export, &k.export, &t.export),
            (Command::Erase, &k.erase, &t.erase),
        ] {
            for w in words {
                let n = normalize(&w.value);
                let other = is_builtin(&n).or_else(|| {
                    [
                        (Command::OptOut, &self.privacy.opt_out),
                        (Command::OptIn, &self.privacy.opt_in),
                        (Command::Help, &self.privacy.help),
                        (Command::Export, &self.privacy.export),
                        (Command::Erase, &self.privacy.erase),
                    ]
                    .into_iter()
                    .find(|(_, set)| set.contains(&n))
                    .map(|(c, _)| c)
                });
                if n.is_empty() {
                    self.err(path, w, "empty keyword: expected a word or phrase");
                } else if let Some(other) = other.filter(|o| *o != command) {
                    self.err(
                        path,
                        w,
                        format!(
                            "privacy keyword {:?} already means {}; it cannot also mean {}",
                            w.value,
                            other.name(),
                            command.name()
                        ),
                    );
                } else if let Some(&flow) = self.keywords.get(&n) {
                    let flow = self.flows[flow].id.clone();
                    self.err(
                        path,
                        w,
                        format!(
                            "privacy keyword {:?} is also a keyword of flow `{flow}`: privacy commands are answered before any flow",
                            w.value
                        ),
                    );
                } else {
                    let set = match command {
                        Command::OptOut => &mut self.privacy.opt_out,
                        Command::OptIn => &mut self.privacy.opt_in,
                        Command::Help => &mut self.privacy.help,
                        Command::Export => &mut self.privacy.export,
                        Command::Erase => &mut self.privacy.erase,
                    };
                    set.insert(n);
                }
            }
            let Some(text) = text else { continue };
            if command == Command::Erase {
                self.err(
                    path,
                    text,
                    "the DELETE MY DATA answers cannot be reworded in flow files yet",
                );
                continue;
            }
            let chars = text.value.chars().count();
            if text.value.trim().is_empty() || chars > 4096 {
                self.err(
                    path,
                    text,
                    format!(
                        "the {} answer must be 1 to 4096 characters; found {chars}",
                        command.name()
                    ),
                );
                continue;
            }
            let key = command.name();
            if let Some(first) = self.privacy_text_files.get(key) {
                let first = first.display().to_string();
                self.err(
                    path,
                    text,
                    format!("the {key} answer is already worded in {first}"),
                );
                continue;
            }
            self.privacy_text_files.insert(key, path.to_path_buf());
            let slot = match command {
                Command::OptOut => &mut self.privacy_texts.opt_out,
                Command::OptIn => &mut self.privacy_texts.opt_in,
                Command::Help => &mut self.privacy_texts.help,
                Command::Export | Command::Erase => &mut self.privacy_texts.export,
            };
            *slot = Some(text.value.clone());
        }
    }

    fn finish(self) -> Result<Flows, FlowError> {
        let default = self.default.ok_or_else(|| FlowError {
            file: PathBuf::from("flows"),
            line: 0,
            column: 0,
            message: "no default flow: add `- default: true` to the triggers of the flow that greets a new contact".into(),
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

    fn text(&mut self, file: &Path, s: &Spanned<String>, max: usize, what: &str) -> Option<Text> {
        let n = s.value.chars().count();
        if n > max {
            self.err(
                file,
                s,
                format!("{what} is {n} characters; WhatsApp allows at most {max}"),
            );
        }
        match Text::parse(&s.value) {
            Ok(t) => {
                let (line, column) = at(s);
                for v in t.vars() {
                    self.used_vars
                        .push((v.to_owned(), file.to_path_buf(), line, column));
                }
                Some(t)
            }
            Err(e) => {
                self.err(file, s, e);
                None
            }
        }
    }

    fn flow(&mut self, idx: FlowIdx, path: &Path, f: &FlowFile) {
        // Triggers.
        for t in &f.triggers {
            let kinds = usize::from(t.keywords.is_some())
                + usize::from(t.regex.is_some())
                + usize::from(t.replies.is_some())
                + usize::from(t.default.is_some());
            if kinds != 1 {
                self.err(path, &f.id, format!("flow `{}`: each trigger takes exactly one of `keywords`, `regex`, `replies`, `default`; found {kinds}", f.id.value));
            }
            for k in t.keywords.iter().flatten() {
                let key = normalize(&k.value);
                if key.is_empty() {
                    self.err(path, k, "empty keyword: expected a word or phrase");
                    continue;
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
                    continue;
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
        // Reachability from the first step, inside the flow.
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
        self.flows[idx].steps = steps;
    }

    fn choices(
        &mut self,
        path: &Path,
        r: &Resolver<'_>,
        list: &[model::Choice],
        id_max: usize,
        title_max: usize,
        what: &str,
    ) -> Vec<Choice> {
        let mut ids = HashSet::new();
        let mut out = Vec::new();
        for c in list {
            if c.id.value.is_empty() || c.id.value.chars().count() > id_max {
                self.err(
                    path,
                    &c.id,
                    format!("{what} id must be 1 to {id_max} characters"),
                );
            }
            if !ids.insert(c.id.value.clone()) {
                self.err(
                    path,
                    &c.id,
                    format!(
                        "duplicate {what} id `{}`: ids must be unique within a message",
                        c.id.value
                    ),
                );
            }
            let n = c.title.value.chars().count();
            if n == 0 || n > title_max {
                self.err(
                    path,
                    &c.title,
                    format!(
                        "{what} title {:?} is {n} characters; WhatsApp allows 1 to {title_max}",
                        c.title.value
                    ),
                );
            }
            if let Some(d) = &c.description {
                let n = d.value.chars().count();
                if n > limits::ROW_DESCRIPTION {
                    self.err(
                        path,
                        d,
                        format!(
                            "row description is {n} characters; WhatsApp allows at most {}",
                            limits::ROW_DESCRIPTION
                        ),
                    );
                }
            }
            let target = match (&c.goto, &c.goto_flow) {
                (Some(g), None) => self.resolve_step(path, r, g),
                (None, Some(g)) => self.resolve_flow(path, r, g),
                (None, None) => {
                    self.err(
                        path,
                        &c.id,
                        format!(
                            "{what} `{}` leads nowhere: expected `goto: STEP` or `goto_flow: FLOW`",
                            c.id.value
                        ),
                    );
                    Target::End
                }
                (Some(g), Some(_)) => {
                    self.err(
                        path,
                        g,
                        format!(
                            "{what} `{}` has both `goto` and `goto_flow`; expected one",
                            c.id.value
                        ),
                    );
                    Target::End
                }
            };
            out.push(Choice {
                id: c.id.value.clone(),
                title: c.title.value.clone(),
                description: c.description.as_ref().map(|d| d.value.clone()),
                target,
            });
        }
        out
    }

    fn resolve_step(&mut self, path: &Path, r: &Resolver<'_>, s: &Spanned<String>) -> Target {
        match r.steps.get(s.value.as_str()) {
            Some(&i) => Target::Step(i),
            None => {
                let mut known: Vec<&&str> = r.steps.keys().collect();
                known.sort();
                let known: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
                self.err(
                    path,
                    s,
                    format!(
                        "unknown step `{}` in flow `{}` (its steps: {})",
                        s.value,
                        r.flow_id,
                        known.join(", ")
                    ),
                );
                Target::End
            }
        }
    }

    fn resolve_flow(&mut self, path: &Path, r: &Resolver<'_>, s: &Spanned<String>) -> Target {
        match r.flows.get(&s.value) {
            Some(&i) => Target::Flow(i),
            None => {
                let mut known: Vec<&String> = r.flows.keys().collect();
                known.sort();
                let known: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
                self.err(
                    path,
                    s,
                    format!("unknown flow `{}` (flows: {})", s.value, known.join(", ")),
                );
                Target::End
            }
        }
    }

    fn step(
        &mut self,
        path: &Path,
        r: &Resolver<'_>,
        s: &model::Step,
        fallthrough: Target,
    ) -> Step {
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
        let empty = Text::plain("");

        let kind = if let Some(say) = &s.say {
            if let Some(buttons) = &s.buttons {
                let text = self
                    .text(path, say, limits::BUTTON_BODY, "button message text")
                    .unwrap_or(empty);
                let n = buttons.value.len();
                if n == 0 || n > limits::BUTTONS {
                    self.err(path, buttons, format!("{n} buttons; WhatsApp allows 1 to {} reply buttons (use a `list` for more)", limits::BUTTONS));
                }
                let choices = self.choices(
                    path,
                    r,
                    &buttons.value,
                    limits::BUTTON_ID,
                    limits::BUTTON_TITLE,
                    "button",
                );
                Kind::Buttons {
                    text,
                    header,
                    footer,
                    choices,
                }
            } else if let Some(list) = &s.list {
                let text = self
                    .text(path, say, limits::TEXT, "list message text")
                    .unwrap_or(empty);
                let l = &list.value;
                let nb = l.button.value.chars().count();
                if nb == 0 || nb > limits::LIST_BUTTON {
                    self.err(
                        path,
                        &l.button,
                        format!(
                            "list button label is {nb} characters; WhatsApp allows 1 to {}",
                            limits::LIST_BUTTON
                        ),
                    );
                }
                let rows: usize = l.sections.iter().map(|s| s.rows.len()).sum();
                if l.sections.is_empty() || l.sections.len() > limits::LIST_SECTIONS {
                    self.err(
                        path,
                        list,
                        format!(
                            "{} sections; WhatsApp allows 1 to {}",
                            l.sections.len(),
                            limits::LIST_SECTIONS
                        ),
                    );
                }
                if rows == 0 || rows > limits::LIST_ROWS {
                    self.err(
                        path,
                        list,
                        format!(
                            "{rows} rows in all sections; WhatsApp allows 1 to {}",
                            limits::LIST_ROWS
                        ),
                    );
                }
                if l.sections.len() > 1 && l.sections.iter().any(|s| s.title.is_none()) {
                    self.err(
                        path,
                        list,
                        "a list with several sections needs a title on each section",
                    );
                }
                let mut sections = Vec::new();
                let all: Vec<&model::Choice> =
                    l.sections.iter().flat_map(|s| s.rows.iter()).collect();
                let mut ids = HashSet::new();
                for c in &all {
                    if !ids.insert(c.id.value.clone()) {
                        self.err(
                            path,
                            &c.id,
                            format!(
                                "duplicate row id `{}`: ids must be unique within a list",
                                c.id.value
                            ),
                        );
                    }
                }
                for sec in &l.sections {
                    if let Some(t) = &sec.title {
                        let n = t.value.chars().count();
                        if n > limits::SECTION_TITLE {
                            self.err(
                                path,
                                t,
                                format!(
                                    "section title is {n} characters; WhatsApp allows at most {}",
                                    limits::SECTION_TITLE
                                ),
                            );
                        }
                    }
                    // Row ids are checked across the list above.
                    let rows =
                        self.choices(path, r, &sec.rows, limits::ROW_ID, limits::ROW_TITLE, "row");
                    sections.push((sec.title.as_ref().map(|t| t.value.clone()), rows));
                }
                Kind::List {
                    text,
                    header,
                    footer,
                    button: l.button.value.clone(),
                    sections,
                }
            } else {
                for (k, v) in [("header", &s.header), ("footer", &s.footer)] {
                    if let Some(v) = v {
                        self.err(
                            path,
                            v,
                            format!(
                                "`{k}` needs `buttons` or `list`: a plain text message has none"
                            ),
                        );
                    }
                }
                let text = self.text(path, say, limits::TEXT, "text").unwrap_or(empty);
                Kind::Say {
                    text,
                    preview_url: s.preview_url.unwrap_or(false),
                }
            }
        } else if let Some(ask) = &s.ask {
            let text = self
                .text(path, ask, limits::TEXT, "question")
                .unwrap_or(empty);
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
        } else if let Some(m) = &s.media {
            let (kind, link) = match (&m.value.image, &m.value.document) {
                (Some(l), None) => (MediaKind::Image, l),
                (None, Some(l)) => (MediaKind::Document, l),
                _ => {
                    self.err(
                        path,
                        m,
                        "media needs exactly one of `image: URL` or `document: URL`",
                    );
                    return Step {
                        id: sid.clone(),
                        kind: Kind::Jump,
                        next,
                        timeout,
                    };
                }
            };
            if !(link.value.starts_with("https://") || link.value.starts_with("http://")) {
                self.err(
                    path,
                    link,
                    format!("media link {:?} is not an http(s) URL", link.value),
                );
            }
            let caption = m
                .value
                .caption
                .as_ref()
                .and_then(|c| self.text(path, c, limits::CAPTION, "caption"));
            if kind == MediaKind::Image
                && let Some(f) = &m.value.filename
            {
                self.err(path, f, "`filename` applies to documents only");
            }
            Kind::Media {
                kind,
                link: link.value.clone(),
                caption,
                filename: m.value.filename.as_ref().map(|f| f.value.clone()),
            }
        } else if let Some(t) = &s.template {
            let name = &t.value.name;
            let ok = !name.value.is_empty()
                && name.value.len() <= limits::TEMPLATE_NAME
                && name
                    .value
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                self.err(path, name, format!("template name {:?} is not valid: Meta's names are lowercase letters, digits and `_`", name.value));
            }
            let params = t
                .value
                .params
                .iter()
                .filter_map(|p| self.text(path, p, limits::TEXT, "template parameter"))
                .collect();
            let marketing = match &t.value.category {
                None => false,
                Some(c) if c.value == "marketing" => true,
                Some(c) if c.value == "utility" || c.value == "authentication" => false,
                Some(c) => {
                    self.err(
                        path,
                        c,
                        format!(
                            "template category {:?}: expected marketing, utility or authentication",
                            c.value
                        ),
                    );
                    false
                }
            };
            Kind::Template {
                name: name.value.clone(),
                language: t.value.language.value.clone(),
                params,
                marketing,
            }
        } else if let Some(b) = &s.branch {
            let mut cases = Vec::new();
            for case in &b.value {
                let subject = match case.subject.value.as_str() {
                    "contact.name" => Subject::ContactName,
                    "tag" => Subject::Tag,
                    other => {
                        match other.strip_prefix("vars.") {
                            Some(v) if valid_name(v) => {
                                let (line, column) = at(&case.subject);
                                self.used_vars.push((
                                    v.to_owned(),
                                    path.to_path_buf(),
                                    line,
                                    column,
                                ));
                                Subject::Var(v.to_owned())
                            }
                            _ => {
                                self.err(path, &case.subject, format!("`if: {other}`: expected `vars.NAME`, `contact.name` or `tag`"));
                                continue;
                            }
                        }
                    }
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
                    continue;
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
                cases.push((subject, test, target));
            }
            let otherwise = match &s.otherwise {
                Some(o) => self.resolve_step(path, r, o),
                None => next,
            };
            Kind::Branch { cases, otherwise }
        } else if let Some(set) = &s.set {
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
        } else if let Some(a) = &s.action {
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
        } else {
            return Step {
                id: sid.clone(),
                kind: Kind::Jump,
                next: if let Some(g) = &s.goto {
                    self.resolve_step(path, r, g)
                } else if let Some(g) = &s.goto_flow {
                    self.resolve_flow(path, r, g)
                } else {
                    Target::End
                },
                timeout,
            };
        };
        Step {
            id: sid.clone(),
            kind,
            next,
            timeout,
        }
    }

    fn check(&mut self, path: &Path, v: &Spanned<model::Validate>) -> Option<Check> {
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

    /// Cycles of steps none of which waits would spin forever.
    fn check_loops(&mut self, order: &[(&PathBuf, &FlowFile)]) {
        let node = |t: Target, flow: FlowIdx| match t {
            Target::Step(s) => Some((flow, s)),
            Target::Flow(f) => Some((f, 0)),
            Target::End => None,
        };
        // 0 = new, 1 = on the stack, 2 = done.
        let mut state: HashMap<(FlowIdx, usize), u8> = HashMap::new();
        let mut reported = BTreeSet::new();
        for f in 0..self.flows.len() {
            for s in 0..self.flows[f].steps.len() {
                let mut stack: Vec<(Node, Vec<Node>)> = Vec::new();
                if state.get(&(f, s)).copied().unwrap_or(0) != 0 {
                    continue;
                }
                let succ = |n: Node, flows: &Vec<Flow>| -> Vec<Node> {
                    let step = &flows[n.0].steps[n.1];
                    if step.waits() {
                        return Vec::new();
                    }
                    targets(step)
                        .into_iter()
                        .filter_map(|t| node(t, n.0))
                        .collect()
                };
                state.insert((f, s), 1);
                stack.push(((f, s), succ((f, s), &self.flows)));
                while let Some((n, rest)) = stack.last_mut() {
                    let n = *n;
                    match rest.pop() {
                        Some(m) => match state.get(&m).copied().unwrap_or(0) {
                            0 => {
                                state.insert(m, 1);
                                let next = succ(m, &self.flows);
                                stack.push((m, next));
                            }
                            1 => {
                                let start = stack.iter().position(|(x, _)| *x == m).unwrap_or(0);
                                let cycle: Vec<Node> =
                                    stack[start..].iter().map(|(x, _)| *x).collect();
                                if reported.insert(cycle.iter().copied().min()) {
                                    let names: Vec<String> = cycle
                                        .iter()
                                        .chain(std::iter::once(&m))
                                        .map(|(fl, st)| {
                                            format!(
                                                "{}/{}",
                                                self.flows[*fl].id, self.flows[*fl].steps[*st].id
                                            )
                                        })
                                        .collect();
                                    let (file, f0) = (order[m.0].0, order[m.0].1);
                                    let span = &f0.steps[m.1].id;
                                    let msg = format!(
                                        "a loop with no waiting step would never stop: {} (add a buttons, list or ask step to it)",
                                        names.join(" → ")
                                    );
                                    self.err(file, span, msg);
                                }
                            }
                            _ => {}
                        },
                        None => {
                            state.insert(n, 2);
                            stack.pop();
                        }
                    }
                }
            }
        }
    }
}

/// A step anywhere: (flow, step).
type Node = (FlowIdx, usize);

struct Resolver<'a> {
    flow_id: &'a str,
    steps: &'a HashMap<&'a str, usize>,
    flows: &'a HashMap<String, FlowIdx>,
}

/// Every transition out of a step.
pub(crate) fn targets(step: &Step) -> Vec<Target> {
    let mut out = vec![step.next];
    if let Some((_, t)) = step.timeout {
        out.push(t);
    }
    match &step.kind {
        Kind::Buttons { choices, .. } => out.extend(choices.iter().map(|c| c.target)),
        Kind::List { sections, .. } => out.extend(
            sections
                .iter()
                .flat_map(|(_, rows)| rows.iter().map(|c| c.target)),
        ),
        Kind::Ask { on_fail, .. } => out.push(*on_fail),
        Kind::Branch { cases, otherwise } => {
            out.extend(cases.iter().map(|c| c.2));
            out.push(*otherwise);
        }
        _ => {}
    }
    // Buttons and lists only go where their choices say.
    if matches!(step.kind, Kind::Buttons { .. } | Kind::List { .. }) {
        out.remove(0);
    }
    out
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn last_line(s: &str) -> String {
    s.lines().last().unwrap_or(s).trim().to_owned()
}
