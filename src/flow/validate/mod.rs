//! Loads a folder of flow files, reports every error (not only the first)
//! as `file:line:col: message`, and compiles the files into [`Flows`].
//!
//! Checks: YAML syntax and unknown keys; duplicate flow or step ids;
//! unknown steps and flows referenced; exactly one kind per step; every
//! WhatsApp limit that can be checked at load (buttons, lists, text
//! lengths); placeholders; variables used but never set; keywords claimed
//! by two flows; invalid regular expressions; a missing or second default
//! flow; unreachable steps; loops with no waiting step. It never panics.
//!
//! - `compiler`: the state of one compilation and its passes;
//! - `flow`: a flow's triggers, step ids and reachability;
//! - `privacy`: a flow file's `privacy:` words and answers;
//! - `step`: one step's shape, and the kinds without a message of their own;
//! - `message`: `say` (with buttons or a list), `media` and `template`;
//! - `graph`: step and flow references, transitions and loops.

mod compiler;
mod flow;
mod graph;
mod message;
mod privacy;
mod step;

use std::fmt;
use std::path::{Path, PathBuf};

use super::Flows;
use super::model::FlowFile;
use compiler::Compiler;

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

impl FlowError {
    /// A problem with a whole file or folder (no position).
    fn whole(file: impl Into<PathBuf>, message: impl Into<String>) -> FlowError {
        FlowError {
            file: file.into(),
            line: 0,
            column: 0,
            message: message.into(),
        }
    }
}

/// The `*.yaml` / `*.yml` files directly in `dir`, sorted.
pub fn flow_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
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
    Ok(paths)
}

/// Loads and checks every `*.yaml` / `*.yml` file directly in `dir`.
pub fn load_dir(dir: &Path) -> Result<Flows, Vec<FlowError>> {
    let paths = flow_files(dir).map_err(|e| {
        vec![FlowError::whole(
            dir,
            format!("cannot read the flows folder: {e}"),
        )]
    })?;
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => sources.push((path, text)),
            Err(e) => errors.push(FlowError::whole(path, format!("cannot read the file: {e}"))),
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
        c.errors
            .push(FlowError::whole("flows", "no flow files (*.yaml) found"));
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
