//! The privacy commands a customer can send at any moment, whatever flow
//! they are in: stop promotions (STOP and the ways people say it), opt
//! back in (START), and HELP. They are read before any flow sees the
//! message and cannot be taken over by a flow; flow files may add words
//! for them in other languages ([`Extra`]).
//!
//! A command is either the whole message (after [`normalize`]: case,
//! accents, surrounding spaces and punctuation do not matter) or, for an
//! opt-out, a clear request in a sentence ("stop sending me promotions",
//! "unsubscribe me", "no more messages please"). A sentence that merely
//! contains the word is not one: "where is the bus stop?", "don't stop the
//! offers". `tests/privacy/` holds the corpus this is measured against.

mod sentence;

use std::collections::HashSet;

use crate::domain::text::normalize;
use sentence::{is_opt_in_phrase, is_opt_out_sentence, tokens};

/// A privacy command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Withdraw marketing consent.
    OptOut,
    /// Give marketing consent (again).
    OptIn,
    /// What the business is, how to reach a person, the commands.
    Help,
    /// A copy of the customer's data ("MY DATA").
    Export,
    /// Erase the customer's data ("DELETE MY DATA"), once confirmed.
    Erase,
}

impl Command {
    /// Every command, in the order a message is tried against them.
    pub const ALL: [Command; 5] = [
        Command::OptOut,
        Command::OptIn,
        Command::Help,
        Command::Export,
        Command::Erase,
    ];

    /// How the business's customers know it.
    pub fn name(self) -> &'static str {
        match self {
            Command::OptOut => "STOP",
            Command::OptIn => "START",
            Command::Help => "HELP",
            Command::Export => "MY DATA",
            Command::Erase => "DELETE MY DATA",
        }
    }
}

/// The whole-message keywords, normalised.
const OPT_OUT: &[&str] = &[
    "stop",
    "stopall",
    "stop all",
    "unsubscribe",
    "cancel",
    "end",
    "quit",
    "revoke",
    "optout",
    "opt out",
    "opt-out",
    "stop promotions",
];
const OPT_IN: &[&str] = &["start", "unstop", "subscribe"];
const HELP: &[&str] = &["help", "info"];
const ERASE: &[&str] = &[
    "delete my data",
    "erase my data",
    "forget me",
    "remove my data",
    "delete all my data",
    "erase all my data",
    "delete everything about me",
];
const EXPORT: &[&str] = &[
    "my data",
    "mydata",
    "export my data",
    "get my data",
    "send me my data",
    "download my data",
    "a copy of my data",
    "copy of my data",
    "what data do you have on me",
    "what data do you have about me",
    "what do you know about me",
];

/// The built-in keyword of each command (for messages and validation).
pub fn builtin(command: Command) -> &'static [&'static str] {
    match command {
        Command::OptOut => OPT_OUT,
        Command::OptIn => OPT_IN,
        Command::Help => HELP,
        Command::Export => EXPORT,
        Command::Erase => ERASE,
    }
}

/// Is `word` (normalised) a built-in keyword of any command?
pub fn is_builtin(word: &str) -> Option<Command> {
    Command::ALL
        .into_iter()
        .find(|c| builtin(*c).contains(&word))
}

/// The answers to the commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Texts {
    pub opt_out: String,
    pub opt_in: String,
    pub help: String,
    /// Before the first reply to a new contact: `privacy_notice`, or
    /// the built-in wording naming the business and linking its policy.
    pub privacy_notice: String,
    /// To a contact who writes in after the policy version changed:
    /// `policy_notice`.
    pub policy_notice: String,
    /// Before the copy of their data arrives.
    pub export: String,
    /// MY DATA again within a day of a copy.
    pub export_again: String,
    /// START (or an opt-in) beyond the day's grants
    /// ([`crate::domain::consent::GRANTS_PER_DAY`]): not recorded.
    pub grant_refused: String,
    /// The question before an erasure, and the two answers' outcomes.
    pub erase_ask: String,
    pub erase_kept: String,
    pub erase_done: String,
}

/// A business's notices as its settings word them (empty: built in).
#[derive(Debug, Clone, Copy, Default)]
pub struct Notices<'a> {
    /// `privacy_notice`: the first-contact notice.
    pub privacy_notice: &'a str,
    /// `policy_notice`: the notice of a policy change.
    pub policy_notice: &'a str,
    /// `policy_url`: the privacy policy's address.
    pub policy_url: &'a str,
}

/// The built-in first-contact notice: who is writing (`intro`), what is
/// kept and why, where the policy is, and the two commands that matter.
pub fn first_contact_notice(intro: &str, policy_url: &str) -> String {
    let notice = format!(
        "{intro} We keep your number and our messages to answer you. Reply PRIVACY to see, \
         correct or delete your data, or STOP to end promotions."
    );
    match policy_url.trim() {
        "" => notice,
        url => format!("{notice} Our privacy policy: {url}"),
    }
}

impl Texts {
    /// The built-in answers, naming the business (`business.name`) and
    /// how to reach a person (`business.contact`), and its notices.
    pub fn new(business: &crate::config::BusinessSettings, notices: Notices<'_>) -> Texts {
        let intro = match business.name.trim() {
            "" => "This is our WhatsApp service.".to_owned(),
            name => format!("This is {name} on WhatsApp."),
        };
        let privacy_notice = match notices.privacy_notice.trim() {
            "" => first_contact_notice(&intro, notices.policy_url),
            own => own.to_owned(),
        };
        let person = match business.contact.trim() {
            "" => "reply AGENT".to_owned(),
            how => how.to_owned(),
        };
        Texts {
            opt_out: "Done: you won't get promotions from us anymore. We'll still answer \
                      your messages and send what you ask for. To get offers again, reply START."
                .to_owned(),
            opt_in: "You'll get our offers again. Reply STOP at any time to end them.".to_owned(),
            help: format!(
                "{intro} To talk to a person, {person}. Reply STOP to end promotions, START to \
                 get them again, or PRIVACY to get, correct or delete your data."
            ),
            privacy_notice,
            policy_notice: notices.policy_notice.to_owned(),
            export: "We're preparing a copy of your data. It will arrive here as a file in a \
                     moment."
                .to_owned(),
            export_again: "We sent you a copy of your data less than a day ago: it's the file \
                           above in this chat. You can ask for a new copy tomorrow."
                .to_owned(),
            grant_refused: "You've switched our offers on and off several times today, so \
                            you stay unsubscribed from promotions for now. To get them again, \
                            reply START tomorrow."
                .to_owned(),
            erase_ask: "This deletes your profile, your preferences and our chat history, and \
                        can't be undone. Delete everything?"
                .to_owned(),
            erase_kept: "Nothing was deleted.".to_owned(),
            erase_done: "Done: we've deleted your data. If you write to us again, we'll start \
                         afresh."
                .to_owned(),
        }
    }
}

/// Keywords flow files add (other languages), normalised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extra {
    pub opt_out: HashSet<String>,
    pub opt_in: HashSet<String>,
    pub help: HashSet<String>,
    pub export: HashSet<String>,
    pub erase: HashSet<String>,
}

impl Extra {
    /// The words added for `command`.
    pub fn words(&self, command: Command) -> &HashSet<String> {
        match command {
            Command::OptOut => &self.opt_out,
            Command::OptIn => &self.opt_in,
            Command::Help => &self.help,
            Command::Export => &self.export,
            Command::Erase => &self.erase,
        }
    }

    /// The words added for `command`, to add more.
    pub fn words_mut(&mut self, command: Command) -> &mut HashSet<String> {
        match command {
            Command::OptOut => &mut self.opt_out,
            Command::OptIn => &mut self.opt_in,
            Command::Help => &mut self.help,
            Command::Export => &mut self.export,
            Command::Erase => &mut self.erase,
        }
    }

    /// The command `word` (normalised) was added for, if any.
    pub fn command_of(&self, word: &str) -> Option<Command> {
        Command::ALL
            .into_iter()
            .find(|c| self.words(*c).contains(word))
    }
}

/// Reads a text message.
pub fn classify(text: &str, extra: &Extra) -> Option<Command> {
    let n = normalize(text);
    for command in Command::ALL {
        if builtin(command).contains(&n.as_str()) || extra.words(command).contains(&n) {
            return Some(command);
        }
    }
    let words = tokens(&n);
    if words.is_empty() {
        return None;
    }
    if is_opt_in_phrase(&words) {
        return Some(Command::OptIn);
    }
    is_opt_out_sentence(&words).then_some(Command::OptOut)
}

/// Reads a tapped button or list row (its title and id): the "Stop
/// promotions" quick reply of a marketing template is an opt-out.
pub fn classify_choice(id: &str, title: &str, extra: &Extra) -> Option<Command> {
    let t = normalize(title);
    let i = normalize(id);
    let stop = |s: &str| {
        matches!(
            s,
            "stop promotions" | "stop_promotions" | "stop" | "unsubscribe"
        ) || extra.opt_out.contains(s)
    };
    (stop(&t) || stop(&i)).then_some(Command::OptOut)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Option<Command> {
        classify(s, &Extra::default())
    }

    #[test]
    fn the_keywords_work_whatever_the_case_spaces_and_punctuation() {
        for s in [
            "STOP",
            " stop. ",
            "Stop!!",
            "STOP ALL",
            "stopall",
            "Unsubscribe",
            "CANCEL",
            "end",
            "Quit",
            "REVOKE",
            "OPTOUT",
            "opt out",
            "OPT-OUT",
            "Stop promotions",
        ] {
            assert_eq!(c(s), Some(Command::OptOut), "{s}");
        }
        for s in ["START", "unstop", "Subscribe!"] {
            assert_eq!(c(s), Some(Command::OptIn), "{s}");
        }
        for s in ["HELP", "info?"] {
            assert_eq!(c(s), Some(Command::Help), "{s}");
        }
    }

    #[test]
    fn a_clear_request_in_a_sentence_is_an_opt_out() {
        for s in [
            "stop sending me promotions",
            "unsubscribe me",
            "no more messages please",
            "Please remove me from your list",
            "I don't want these offers anymore",
            "do not message me again",
            "please stop",
        ] {
            assert_eq!(c(s), Some(Command::OptOut), "{s}");
        }
    }

    #[test]
    fn a_sentence_that_merely_contains_the_word_is_not() {
        for s in [
            "where is the bus stop near you?",
            "don't stop the offers",
            "I want to cancel my order",
            "when does the sale end?",
            "please don't unsubscribe me",
            "can you stop by tomorrow?",
        ] {
            assert_eq!(c(s), None, "{s}");
        }
    }

    #[test]
    fn flows_may_add_words_but_not_take_the_built_in_ones_away() {
        let mut extra = Extra::default();
        extra.opt_out.insert("baja".into());
        assert_eq!(classify("BAJA", &extra), Some(Command::OptOut));
        assert_eq!(classify("stop", &extra), Some(Command::OptOut));
    }

    #[test]
    fn the_stop_promotions_quick_reply_is_an_opt_out() {
        let e = Extra::default();
        assert_eq!(
            classify_choice("anything", "Stop promotions", &e),
            Some(Command::OptOut)
        );
        assert_eq!(classify_choice("offers", "See offers", &e), None);
    }

    fn named(name: &str) -> crate::config::BusinessSettings {
        crate::config::BusinessSettings {
            name: name.to_owned(),
            contact: String::new(),
        }
    }

    #[test]
    fn the_built_in_first_contact_notice_names_the_business_and_links_its_policy() {
        let with_link = Notices {
            policy_url: "https://acme.example/privacy",
            ..Notices::default()
        };
        let texts = Texts::new(&named("Acme Shoes"), with_link);
        assert!(
            texts
                .privacy_notice
                .starts_with("This is Acme Shoes on WhatsApp.")
        );
        assert!(
            texts
                .privacy_notice
                .ends_with("Our privacy policy: https://acme.example/privacy")
        );
        let plain = Texts::new(&named(""), Notices::default());
        assert!(
            plain
                .privacy_notice
                .starts_with("This is our WhatsApp service.")
        );
        assert!(!plain.privacy_notice.contains("http"));
        assert!(!plain.privacy_notice.contains("updated"));
    }

    #[test]
    fn a_worded_notice_is_sent_as_written() {
        let own = Notices {
            privacy_notice: "Hola, somos Acme.",
            policy_notice: "Nueva política.",
            policy_url: "https://acme.example/privacy",
        };
        let texts = Texts::new(&named("Acme"), own);
        assert_eq!(texts.privacy_notice, "Hola, somos Acme.");
        assert_eq!(texts.policy_notice, "Nueva política.");
    }

    proptest::proptest! {
        /// What a message means does not depend on its case or on the
        /// spaces around it.
        #[test]
        fn keywords_are_invariant_to_case_and_surrounding_whitespace(
            text in "[A-Za-z !.']{0,24}|(stop|start|help|unsubscribe|my data|delete my data|stop promotions)",
            upper in proptest::prelude::any::<bool>(),
            left in "[ \t\n]{0,3}",
            right in "[ \t\n]{0,3}",
        ) {
            let varied = if upper { text.to_uppercase() } else { text.to_lowercase() };
            let padded = format!("{left}{varied}{right}");
            proptest::prop_assert_eq!(c(&padded), c(&text));
        }
    }
}
