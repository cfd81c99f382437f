//! A flow file's `privacy:` section: words in other languages for the
//! built-in privacy commands, and their answers reworded.

use std::path::Path;

use super::compiler::Compiler;
use crate::domain::text::normalize;
use crate::flow::model::{PrivacySpec, Spanned};
use crate::privacy::keywords::{Command, is_builtin};

impl Compiler {
    /// A word may not mean two commands, nor be a flow's keyword (it would
    /// never reach the flow); each answer is worded in one file at most.
    pub(super) fn privacy(&mut self, path: &Path, p: &PrivacySpec) {
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
                self.privacy_word(path, command, w);
            }
            if let Some(text) = text {
                self.privacy_text(path, command, text);
            }
        }
    }

    fn privacy_word(&mut self, path: &Path, command: Command, w: &Spanned<String>) {
        let n = normalize(&w.value);
        let other = is_builtin(&n).or_else(|| self.privacy.command_of(&n));
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
            self.privacy.words_mut(command).insert(n);
        }
    }

    fn privacy_text(&mut self, path: &Path, command: Command, text: &Spanned<String>) {
        if command == Command::Erase {
            self.err(
                path,
                text,
                "the DELETE MY DATA answers cannot be reworded in flow files yet",
            );
            return;
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
            return;
        }
        let key = command.name();
        if let Some(first) = self.privacy_text_files.get(key) {
            let first = first.display().to_string();
            self.err(
                path,
                text,
                format!("the {key} answer is already worded in {first}"),
            );
            return;
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
