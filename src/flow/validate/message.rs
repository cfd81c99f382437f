//! The steps that send a message of their own design: `say` (plain, with
//! reply buttons or with a list), `media` and `template`, checked against
//! WhatsApp's limits ([`super::limits`]).

use std::collections::HashSet;
use std::path::Path;

use super::compiler::Compiler;
use super::graph::Resolver;
use super::limits;
use crate::flow::model::{ChoiceSpec, ListSpec, MediaSpec, Spanned, StepSpec, TemplateSpec};
use crate::flow::text::Text;
use crate::flow::{Choice, Kind, MediaKind, Target};

impl Compiler {
    /// A `say` step: a text, or the body of buttons or a list.
    pub(super) fn say(
        &mut self,
        path: &Path,
        r: &Resolver<'_>,
        s: &StepSpec,
        say: &Spanned<String>,
        header: Option<Text>,
        footer: Option<Text>,
    ) -> Kind {
        if let Some(buttons) = &s.buttons {
            let text = self
                .text(path, say, limits::BUTTON_BODY, "button message text")
                .unwrap_or_else(|| Text::plain(""));
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
                .unwrap_or_else(|| Text::plain(""));
            self.list(path, r, list, text, header, footer)
        } else {
            for (k, v) in [("header", &s.header), ("footer", &s.footer)] {
                if let Some(v) = v {
                    self.err(
                        path,
                        v,
                        format!("`{k}` needs `buttons` or `list`: a plain text message has none"),
                    );
                }
            }
            let text = self
                .text(path, say, limits::TEXT, "text")
                .unwrap_or_else(|| Text::plain(""));
            Kind::Say {
                text,
                preview_url: s.preview_url.unwrap_or(false),
            }
        }
    }

    fn list(
        &mut self,
        path: &Path,
        r: &Resolver<'_>,
        list: &Spanned<ListSpec>,
        text: Text,
        header: Option<Text>,
        footer: Option<Text>,
    ) -> Kind {
        let l = &list.value;
        self.check_list_limits(path, list);
        let mut ids = HashSet::new();
        for c in l.sections.iter().flat_map(|s| s.rows.iter()) {
            self.unique_id(path, &mut ids, c, "row", "list");
        }
        let mut sections = Vec::new();
        for sec in &l.sections {
            if let Some(t) = &sec.title {
                self.at_most(path, t, limits::SECTION_TITLE, "section title");
            }
            // Row ids are checked across the list above.
            let rows = self.choices(path, r, &sec.rows, limits::ROW_ID, limits::ROW_TITLE, "row");
            sections.push((sec.title.as_ref().map(|t| t.value.clone()), rows));
        }
        Kind::List {
            text,
            header,
            footer,
            button: l.button.value.clone(),
            sections,
        }
    }

    /// The button label, the number of sections and rows, section titles.
    fn check_list_limits(&mut self, path: &Path, list: &Spanned<ListSpec>) {
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
    }

    /// Reports `c`'s id if `ids` already holds it (`within` a message or a list).
    fn unique_id(
        &mut self,
        path: &Path,
        ids: &mut HashSet<String>,
        c: &ChoiceSpec,
        what: &str,
        within: &str,
    ) {
        if !ids.insert(c.id.value.clone()) {
            self.err(
                path,
                &c.id,
                format!(
                    "duplicate {what} id `{}`: ids must be unique within a {within}",
                    c.id.value
                ),
            );
        }
    }

    /// Reply buttons or the rows of one list section.
    fn choices(
        &mut self,
        path: &Path,
        r: &Resolver<'_>,
        list: &[ChoiceSpec],
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
            self.unique_id(path, &mut ids, c, what, "message");
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
                self.at_most(path, d, limits::ROW_DESCRIPTION, "row description");
            }
            let target = self.choice_target(path, r, c, what);
            out.push(Choice {
                id: c.id.value.clone(),
                title: c.title.value.clone(),
                description: c.description.as_ref().map(|d| d.value.clone()),
                target,
            });
        }
        out
    }

    /// Where a button or row leads: exactly one of `goto` and `goto_flow`.
    fn choice_target(
        &mut self,
        path: &Path,
        r: &Resolver<'_>,
        c: &ChoiceSpec,
        what: &str,
    ) -> Target {
        match (&c.goto, &c.goto_flow) {
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
        }
    }

    /// An image or a document by link; a pure jump when it has neither or both.
    pub(super) fn media(&mut self, path: &Path, m: &Spanned<MediaSpec>) -> Kind {
        let (kind, link) = match (&m.value.image, &m.value.document) {
            (Some(l), None) => (MediaKind::Image, l),
            (None, Some(l)) => (MediaKind::Document, l),
            _ => {
                self.err(
                    path,
                    m,
                    "media needs exactly one of `image: URL` or `document: URL`",
                );
                return Kind::Jump;
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
    }

    /// A template approved by Meta, by name and language.
    pub(super) fn template(&mut self, path: &Path, t: &Spanned<TemplateSpec>) -> Kind {
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
    }
}
