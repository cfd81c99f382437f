//! Flows: the conversations a business describes in YAML files.
//!
//! - [`model`]: the file format as written (with source positions).
//! - [`validate`]: loads a folder, reports every error as
//!   `file:line:col: message`, and compiles the files into [`Flows`].
//! - [`text`]: message text with `{{contact.name}}` / `{{vars.NAME}}`.
//!
//! The compiled [`Flows`] is what the engine runs: ids resolved to
//! indexes, limits checked, regular expressions built.

pub mod engine;
pub mod model;
pub mod sets;
pub mod text;
pub mod transcript;
pub mod validate;

pub use sets::FlowSets;

use std::collections::HashMap;
use std::time::Duration;

use regex::Regex;

pub use text::Text;
pub use validate::{FlowError, load_dir};

/// Index of a flow in [`Flows`].
pub type FlowIdx = usize;
/// Index of a step in its [`Flow`].
pub type StepIdx = usize;

/// Where a transition leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Step(StepIdx),
    /// The first step of another flow.
    Flow(FlowIdx),
    End,
}

/// A checked, runnable set of flows.
#[derive(Debug)]
pub struct Flows {
    pub flows: Vec<Flow>,
    pub by_id: HashMap<String, FlowIdx>,
    /// Normalised keyword → flow.
    pub keywords: HashMap<String, FlowIdx>,
    /// Words the flow files add to the built-in privacy commands.
    pub privacy: crate::privacy::keywords::Extra,
    /// Answers to the privacy commands that flow files reword.
    pub privacy_texts: PrivacyTexts,
    pub regexes: Vec<(Regex, FlowIdx)>,
    /// Interactive reply id or quick-reply payload → flow.
    pub replies: HashMap<String, FlowIdx>,
    pub default: FlowIdx,
}

#[derive(Debug)]
pub struct Flow {
    pub id: String,
    pub fallback: Option<Text>,
    pub steps: Vec<Step>,
}

#[derive(Debug)]
pub struct Step {
    pub id: String,
    pub kind: Kind,
    /// Where a non-waiting step goes next.
    pub next: Target,
    /// For waiting steps: where to go after this long without an answer.
    pub timeout: Option<(Duration, Target)>,
}

impl Step {
    /// Waiting steps stop the run until the customer answers.
    pub fn waits(&self) -> bool {
        matches!(
            self.kind,
            Kind::Buttons { .. } | Kind::List { .. } | Kind::Ask { .. }
        )
    }
}

/// A reply button or list row.
#[derive(Debug, Clone)]
pub struct Choice {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub target: Target,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    Document,
}

/// How an `ask` answer is checked.
#[derive(Debug)]
pub enum Check {
    Regex(Regex),
    Choice(Vec<String>),
    Number { min: Option<f64>, max: Option<f64> },
    Email,
    MinLength(usize),
}

/// What a `branch` case tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    Var(String),
    ContactName,
    Tag,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Equals(String),
    NotEquals(String),
    IsSet(bool),
    Has(String),
}

/// What an `action` step asks of the later stages (named in flow files
/// as `handoff`, `opt_in`, `opt_out`, `export`, `erase`, `update_name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Handoff,
    OptIn,
    OptOut,
    Export,
    Erase,
    UpdateName,
}

impl Action {
    /// The action's name, as flow files, logs and transcripts write it.
    pub fn name(self) -> &'static str {
        match self {
            Action::Handoff => "handoff",
            Action::OptIn => "opt_in",
            Action::OptOut => "opt_out",
            Action::Export => "export",
            Action::Erase => "erase",
            Action::UpdateName => "update_name",
        }
    }
}

#[derive(Debug)]
pub enum Kind {
    Say {
        text: Text,
        preview_url: bool,
    },
    Buttons {
        text: Text,
        header: Option<Text>,
        footer: Option<Text>,
        choices: Vec<Choice>,
    },
    List {
        text: Text,
        header: Option<Text>,
        footer: Option<Text>,
        button: String,
        sections: Vec<(Option<String>, Vec<Choice>)>,
    },
    Media {
        kind: MediaKind,
        link: String,
        caption: Option<Text>,
        filename: Option<String>,
    },
    Template {
        name: String,
        language: String,
        params: Vec<Text>,
        marketing: bool,
    },
    Ask {
        text: Text,
        save_as: Option<String>,
        check: Option<Check>,
        retry: Option<Text>,
        max_retries: u32,
        on_fail: Target,
    },
    Branch {
        cases: Vec<(Subject, Test, Target)>,
        otherwise: Target,
    },
    Set {
        vars: Vec<(String, Text)>,
        add_tags: Vec<String>,
        remove_tags: Vec<String>,
        name: Option<Text>,
    },
    /// A pure jump (`goto`, `goto_flow`, `end`): `next` says where.
    Jump,
    Action {
        action: Action,
        purpose: Option<String>,
    },
}

/// The flows in force, replaced whole when a reload succeeds. Workers
/// take the current set for each unit of work; a reload never changes the
/// set under a running step.
#[derive(Clone)]
pub struct SharedFlows {
    inner: std::sync::Arc<std::sync::RwLock<std::sync::Arc<Flows>>>,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
    failed: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl SharedFlows {
    pub fn new(flows: Flows) -> Self {
        SharedFlows {
            inner: std::sync::Arc::new(std::sync::RwLock::new(std::sync::Arc::new(flows))),
            generation: Default::default(),
            failed: Default::default(),
        }
    }

    pub fn current(&self) -> std::sync::Arc<Flows> {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts a new set in force.
    pub fn replace(&self, flows: Flows) {
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = std::sync::Arc::new(flows);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Records a reload that found invalid flows (the old set stays).
    pub fn record_failure(&self) {
        self.failed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many reloads succeeded.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many reloads were refused.
    pub fn failures(&self) -> u64 {
        self.failed.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Flows {
    /// The flow with this id.
    pub fn flow(&self, id: &str) -> Option<&Flow> {
        self.by_id.get(id).map(|&i| &self.flows[i])
    }
}

/// The answers to the privacy commands a flow file rewords (`None`: the
/// built-in wording).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrivacyTexts {
    pub opt_out: Option<String>,
    pub opt_in: Option<String>,
    pub help: Option<String>,
    pub export: Option<String>,
}
