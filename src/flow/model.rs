//! The flow file format, as written in YAML (see docs/flows.md).
//!
//! These types mirror the file one to one, with source positions
//! ([`Spanned`]) on everything a validation error may point at. The
//! validator ([`super::validate`]) turns them into the checked form the
//! engine runs. Where a compiled type exists under a name (`flow::Step`,
//! `flow::Choice`), the file's form of it is called `…Spec` here.

use std::collections::BTreeMap;

use serde::Deserialize;
pub use serde_saphyr::Spanned;

/// One flow file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowFile {
    pub id: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub triggers: Vec<Trigger>,
    /// Said when the customer sends something this flow cannot read
    /// (an image, a sticker, an unknown type) while the flow waits.
    #[serde(default)]
    pub fallback: Option<Spanned<String>>,
    /// Words for the built-in privacy commands (other languages), and the
    /// wording of their answers.
    #[serde(default)]
    pub privacy: Option<PrivacySpec>,
    pub steps: Vec<StepSpec>,
}

/// `privacy:` in a flow file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySpec {
    #[serde(default)]
    pub keywords: PrivacyWords<Vec<Spanned<String>>>,
    #[serde(default)]
    pub texts: PrivacyWords<Option<Spanned<String>>>,
}

/// One value per privacy command.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyWords<T> {
    #[serde(default)]
    pub opt_out: T,
    #[serde(default)]
    pub opt_in: T,
    #[serde(default)]
    pub help: T,
    #[serde(default)]
    pub export: T,
    /// Only for `keywords` (the erasure's wording is built in).
    #[serde(default)]
    pub erase: T,
}

/// What starts a flow. Exactly one key per trigger.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// Whole-message keywords, matched after normalising case, accents,
    /// surrounding whitespace and punctuation.
    #[serde(default)]
    pub keywords: Option<Vec<Spanned<String>>>,
    /// A regular expression matched against the message text.
    #[serde(default)]
    pub regex: Option<Spanned<String>>,
    /// Ids of interactive replies or template quick-reply payloads.
    #[serde(default)]
    pub replies: Option<Vec<Spanned<String>>>,
    /// This flow starts for a contact with no session.
    #[serde(default)]
    pub default: Option<Spanned<bool>>,
}

/// One step. `id` plus exactly one kind key (`say`, `ask`, `media`,
/// `template`, `branch`, `set`, `goto`, `goto_flow`, `end`, `action`);
/// `say` may carry `buttons` or `list`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub id: Spanned<String>,
    #[serde(default)]
    pub say: Option<Spanned<String>>,
    #[serde(default)]
    pub header: Option<Spanned<String>>,
    #[serde(default)]
    pub footer: Option<Spanned<String>>,
    #[serde(default)]
    pub preview_url: Option<bool>,
    #[serde(default)]
    pub buttons: Option<Spanned<Vec<ChoiceSpec>>>,
    #[serde(default)]
    pub list: Option<Spanned<ListSpec>>,
    #[serde(default)]
    pub media: Option<Spanned<MediaSpec>>,
    #[serde(default)]
    pub template: Option<Spanned<TemplateSpec>>,
    #[serde(default)]
    pub ask: Option<Spanned<String>>,
    #[serde(default)]
    pub save_as: Option<Spanned<String>>,
    #[serde(default)]
    pub validate: Option<Spanned<ValidateSpec>>,
    #[serde(default)]
    pub retry: Option<Spanned<String>>,
    #[serde(default)]
    pub max_retries: Option<u32>,
    #[serde(default)]
    pub on_fail: Option<Spanned<String>>,
    #[serde(default)]
    pub branch: Option<Spanned<Vec<Case>>>,
    #[serde(default, rename = "else")]
    pub otherwise: Option<Spanned<String>>,
    #[serde(default)]
    pub set: Option<Spanned<SetSpec>>,
    #[serde(default)]
    pub goto: Option<Spanned<String>>,
    #[serde(default)]
    pub goto_flow: Option<Spanned<String>>,
    #[serde(default)]
    pub end: Option<Spanned<bool>>,
    #[serde(default)]
    pub action: Option<Spanned<String>>,
    #[serde(default)]
    pub purpose: Option<Spanned<String>>,
    /// Where to go after a non-waiting step (default: the next step in the file).
    #[serde(default)]
    pub next: Option<Spanned<String>>,
    #[serde(default)]
    pub timeout: Option<Spanned<Timeout>>,
}

/// A reply button or a list row, with where it leads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChoiceSpec {
    pub id: Spanned<String>,
    pub title: Spanned<String>,
    #[serde(default)]
    pub description: Option<Spanned<String>>,
    #[serde(default)]
    pub goto: Option<Spanned<String>>,
    #[serde(default)]
    pub goto_flow: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSpec {
    /// The label of the button that opens the list.
    pub button: Spanned<String>,
    pub sections: Vec<Section>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    #[serde(default)]
    pub title: Option<Spanned<String>>,
    pub rows: Vec<ChoiceSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSpec {
    #[serde(default)]
    pub image: Option<Spanned<String>>,
    #[serde(default)]
    pub document: Option<Spanned<String>>,
    #[serde(default)]
    pub caption: Option<Spanned<String>>,
    #[serde(default)]
    pub filename: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    pub name: Spanned<String>,
    pub language: Spanned<String>,
    /// Body parameters, in order; they may use `{{…}}` interpolation.
    #[serde(default)]
    pub params: Vec<Spanned<String>>,
    /// `marketing` templates need marketing consent when sent.
    #[serde(default)]
    pub category: Option<Spanned<String>>,
}

/// How an `ask` answer is checked. Exactly one key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateSpec {
    #[serde(default)]
    pub regex: Option<Spanned<String>>,
    #[serde(default)]
    pub choice: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub number: Option<NumberRange>,
    #[serde(default)]
    pub email: Option<bool>,
    #[serde(default)]
    pub min_length: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberRange {
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
}

/// One case of a `branch`: a condition and where it leads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// `vars.NAME`, `contact.name` or `tag`.
    #[serde(rename = "if")]
    pub subject: Spanned<String>,
    #[serde(default)]
    pub equals: Option<Spanned<String>>,
    #[serde(default)]
    pub not_equals: Option<Spanned<String>>,
    #[serde(default)]
    pub is_set: Option<bool>,
    #[serde(default)]
    pub has: Option<Spanned<String>>,
    pub goto: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetSpec {
    #[serde(default)]
    pub vars: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub add_tags: Vec<Spanned<String>>,
    #[serde(default)]
    pub remove_tags: Vec<Spanned<String>>,
    #[serde(default)]
    pub contact: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeout {
    pub after: Spanned<String>,
    pub goto: Spanned<String>,
}
