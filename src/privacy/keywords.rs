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

use std::collections::HashSet;

use crate::flow::normalize;

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
    [
        Command::OptOut,
        Command::OptIn,
        Command::Help,
        Command::Export,
        Command::Erase,
    ]
    .into_iter()
    .find(|c| builtin(*c).contains(&word))
}

/// The answers to the commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Texts {
    pub opt_out: String,
    pub opt_in: String,
    pub help: String,
    /// `privacy.policy_notice`.
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

impl Texts {
    /// The built-in answers, naming the business (`business.name`) and
    /// how to reach a person (`business.contact`).
    pub fn new(business: &crate::config::BusinessSettings, policy_notice: &str) -> Texts {
        let intro = match business.name.trim() {
            "" => "This is our WhatsApp service.".to_owned(),
            name => format!("This is {name} on WhatsApp."),
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
            policy_notice: policy_notice.to_owned(),
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

/// Reads a text message.
pub fn classify(text: &str, extra: &Extra) -> Option<Command> {
    let n = normalize(text);
    for (command, words) in [
        (Command::OptOut, &extra.opt_out),
        (Command::OptIn, &extra.opt_in),
        (Command::Help, &extra.help),
        (Command::Export, &extra.export),
        (Command::Erase, &extra.erase),
    ] {
        if builtin(command).contains(&n.as_str()) || words.contains(&n) {
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

/// The words of a normalised message: letters and digits only, with
/// apostrophes dropped ("don't" is "dont").
fn tokens(n: &str) -> Vec<String> {
    n.replace(['\'', '’', '`'], "")
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Words that put what follows them in the negative.
fn negation(w: &str) -> bool {
    matches!(
        w,
        "dont" | "not" | "never" | "cant" | "cannot" | "wont" | "didnt" | "doesnt" | "shouldnt"
    )
}

/// What people ask to stop: messages and promotions.
fn messaging(w: &str) -> bool {
    let w = w.strip_suffix('s').unwrap_or(w);
    matches!(
        w,
        "message"
            | "msg"
            | "msge"
            | "text"
            | "sm"
            | "promotion"
            | "promo"
            | "offer"
            | "ad"
            | "advert"
            | "advertisement"
            | "advertising"
            | "marketing"
            | "spam"
            | "notification"
            | "newsletter"
            | "email"
            | "mail"
            | "whatsapp"
            | "broadcast"
            | "deal"
            | "discount"
            | "promotional"
            | "commercial"
            | "update"
            | "alert"
            | "sale"
    )
}

/// The act of messaging someone.
fn sending(w: &str) -> bool {
    matches!(
        w,
        "sending"
            | "send"
            | "texting"
            | "messaging"
            | "message"
            | "contacting"
            | "contact"
            | "spamming"
            | "emailing"
            | "calling"
            | "bothering"
            | "bugging"
            | "pestering"
            | "harassing"
            | "receiving"
            | "receive"
            | "getting"
            | "get"
            | "whatsapping"
    )
}

fn is_unsubscribe(w: &str) -> bool {
    (w.starts_with("unsub") || w.starts_with("unsusc") || w.starts_with("unscub"))
        && !w.ends_with("ed")
}

/// Is the verb at `i` negated: "don't stop", "please don't unsubscribe",
/// "never ever stop", "do not stop"? (A negation further back belongs to
/// another clause: "not interested, please stop".)
fn negated(words: &[String], i: usize) -> bool {
    let prev = |k: usize| i.checked_sub(k).map_or("", |j| words[j].as_str());
    negation(prev(1))
        || (negation(prev(2)) && matches!(prev(1), "ever" | "you" | "just" | "please" | "really"))
        || (prev(2) == "do" && prev(1) == "not")
}

/// A message that says the customer wants the messages: no opt-out,
/// whatever else it says ("please keep me on the list").
fn wants_messages(words: &[String]) -> bool {
    words.windows(2).any(|p| {
        matches!(
            (p[0].as_str(), p[1].as_str()),
            ("keep", "me") | ("keep", "sending") | ("keep", "them") | ("still", "want")
        )
    })
}

/// Damerau distance 1 from "stop" by a swap of neighbours or a doubled
/// letter ("sotp", "stpo", "stopp"), not a real word ("spot", "stoop").
fn stop_typo(w: &str) -> bool {
    matches!(
        w,
        "tsop" | "sotp" | "stpo" | "sstop" | "sttop" | "stopp" | "stahp" | "stopit"
    )
}

/// Verbs that, not negated and followed by messaging, ask to stop it.
fn stopping(w: &str) -> bool {
    matches!(
        w,
        "stop" | "quit" | "cease" | "end" | "block" | "halt" | "stopp" | "stahp"
    )
}

/// Words that can follow a bare "stop" at the end of a message.
fn trailing(w: &str) -> bool {
    matches!(
        w,
        "it" | "them"
            | "this"
            | "that"
            | "now"
            | "please"
            | "pls"
            | "plz"
            | "already"
            | "all"
            | "asap"
            | "immediately"
            | "thanks"
            | "thx"
            | "ok"
    )
}

/// Lists a customer is on for messages, not others ("waiting list").
fn mailing_list(words: &[String], from: usize) -> bool {
    (from..words.len()).any(|j| {
        let w = words[j].as_str();
        let before = if j > 0 { words[j - 1].as_str() } else { "" };
        (matches!(
            w,
            "list"
                | "lists"
                | "mailing"
                | "marketing"
                | "broadcast"
                | "subscribers"
                | "subscription"
                | "database"
                | "contacts"
        ) || messaging(w))
            && !matches!(
                before,
                "waiting" | "wish" | "shopping" | "guest" | "gift" | "price"
            )
    })
}

fn is_opt_in_phrase(words: &[String]) -> bool {
    let core = ["start", "unstop", "subscribe", "resubscribe", "optin"];
    let filler = [
        "me", "again", "please", "pls", "opt", "in", "back", "now", "to", "offers",
    ];
    words.iter().any(|w| core.contains(&w.as_str()))
        && words
            .iter()
            .all(|w| core.contains(&w.as_str()) || filler.contains(&w.as_str()))
        && words.len() <= 5
}

fn is_opt_out_sentence(words: &[String]) -> bool {
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    if wants_messages(words) {
        return false;
    }
    // A message of only "stop" and a few polite words: "please stop",
    // "STOP STOP", "stop it now", "stop all", or a typo of it.
    let polite = [
        "please", "pls", "plz", "just", "ok", "okay", "now", "it", "thanks", "thx", "all",
    ];
    if words.len() <= 5
        && words.iter().any(|x| x == "stop" || stop_typo(x))
        && words
            .iter()
            .all(|x| x == "stop" || stop_typo(x) || polite.contains(&x.as_str()))
    {
        return true;
    }
    let mentions_messaging = words.iter().any(|x| messaging(x) || sending(x));
    for i in 0..words.len() {
        let word = w(i);
        // "unsubscribe me", "how do I unsubscribe", "not interested.
        // Unsubscribe."; not "please don't unsubscribe me", "I unsubscribed
        // by mistake", "I pressed unsubscribe" or "is unsubscribing…".
        if is_unsubscribe(word)
            && !negated(words, i)
            && (!word.ends_with("ing") || matches!(w(i.wrapping_sub(1)), "im" | "am"))
            && !matches!(
                w(i.wrapping_sub(1)),
                "pressed" | "clicked" | "hit" | "tapped" | "the" | "an" | "a"
            )
            && !matches!(w(i + 1), "link" | "links" | "button" | "option" | "page")
        {
            return true;
        }
        // "opt out", "opt me out", "optout"; of something, only of
        // messages ("opt out of insurance" is not one); "an opt-out option"
        // is not a request.
        let out_at = if word == "optout" {
            Some(i + 1)
        } else if word == "opt" && (w(i + 1).starts_with("ou") || w(i + 1) == "ot") {
            Some(i + 2)
        } else if word == "opt" && w(i + 2) == "out" {
            Some(i + 3)
        } else {
            None
        };
        if let Some(after) = out_at
            && !negated(words, i)
            && !matches!(w(after), "option" | "options" | "button" | "box" | "link")
            && (w(after) != "of"
                || matches!(w(after + 1), "everything" | "all" | "it")
                || mailing_list(words, after + 1))
        {
            return true;
        }
        // "withdraw my consent", "I revoke my consent".
        if matches!(
            word,
            "withdraw" | "withdrawing" | "revoke" | "revoking" | "retract"
        ) && (i + 1..(i + 4).min(words.len())).any(|j| w(j) == "consent")
        {
            return true;
        }
        // "stop sending me promotions", "stop the ads", "quit texting me",
        // "block promotions to my number": not negated, then messaging
        // within a few words (of the same clause).
        // "end" is mostly a noun ("the end-of-season sale"): only as an
        // order, first in the message or after "please".
        let imperative = word != "end" || i == 0 || matches!(w(i - 1), "please" | "pls" | "just");
        // "I'd appreciate it if you stopped sending me promotions".
        let past_request = word == "stopped" && w(i.wrapping_sub(1)) == "you";
        if (stopping(word) || stop_typo(word) || past_request) && imperative && !negated(words, i) {
            let next: Vec<&str> = (i + 1..(i + 5).min(words.len())).map(w).collect();
            if next.first().is_some_and(|n| sending(n))
                || next
                    .iter()
                    .take_while(|n| !matches!(**n, "and" | "but" | "or" | "because" | "from"))
                    .any(|n| messaging(n))
            {
                return true;
            }
            // "… please stop them", "why do you keep sending me this? STOP".
            let rest_trailing = words[i + 1..].iter().all(|x| trailing(x));
            if word == "stop"
                && rest_trailing
                && (matches!(
                    w(i.wrapping_sub(1)),
                    "please" | "pls" | "plz" | "just" | "so"
                ) || (i + 1 < words.len())
                    || mentions_messaging)
            {
                return true;
            }
        }
        // "no more messages please", "enough with the promotions"; not "no
        // more messages from the courier".
        if (word == "no" && w(i + 1) == "more") || word == "enough" {
            let from = if word == "no" { i + 2 } else { i + 1 };
            if let Some(j) = (from..(from + 3).min(words.len())).find(|&j| messaging(w(j))) {
                let third_party = matches!(w(j + 1), "from" | "since")
                    && !matches!(w(j + 2), "you" | "your" | "us" | "this" | "them");
                if !third_party {
                    return true;
                }
            }
        }
        // "don't send me promotions", "do not message me again", "I don't
        // want these offers anymore", "I no longer want messages", "I do
        // not consent to marketing"; not "never stop sending me deals".
        let negative_from = if negation(word) {
            Some(i + 1)
        } else if (word == "do" && w(i + 1) == "not") || (word == "no" && w(i + 1) == "longer") {
            Some(i + 2)
        } else {
            None
        };
        if let Some(from) = negative_from
            && !stopping(w(from))
            && !(w(from) == "ever" && stopping(w(from + 1)))
        {
            let rest: Vec<&str> = (from..(from + 9).min(words.len())).map(w).collect();
            let verb = rest.iter().position(|r| {
                sending(r) || matches!(*r, "want" | "need" | "wish" | "text" | "msg" | "consent")
            });
            if let Some(v) = verb {
                let after = &rest[v + 1..];
                let wanting = matches!(rest[v], "want" | "need" | "wish" | "consent");
                // "I don't want to miss the deals" wants them.
                let to_other = after.first() == Some(&"to")
                    && after.get(1).is_some_and(|x| {
                        !(sending(x) || matches!(*x, "be" | "see" | "hear" | "read" | "have"))
                    });
                // The object is close, in the same clause: "don't send an
                // invoice by post, email is fine" is about the invoice.
                let reach = if wanting { 7 } else { 4 };
                let object = !to_other
                    && after
                        .iter()
                        .take(reach)
                        .take_while(|r| !matches!(**r, "by" | "via" | "but" | "and" | "because"))
                        .any(|r| messaging(r));
                let again = after.iter().any(|r| matches!(*r, "again" | "anymore"))
                    || after.windows(2).any(|p| p == ["any", "more"]);
                let to_me = after.first().is_some_and(|r| *r == "me" || *r == "us");
                // Not getting something is a complaint ("I didn't get any
                // messages about my delivery") unless it is for good.
                let receiving = matches!(rest[v], "get" | "getting" | "receive" | "receiving");
                let wanted = matches!(rest[v], "want" | "need" | "wish");
                if (object && (!receiving || again)) || (to_me && again && !wanted) {
                    return true;
                }
            }
        }
        // "remove me from your list", "take my number off your list",
        // "not interested, remove me"; not "take me off the waiting list".
        if matches!(
            word,
            "remove" | "removing" | "take" | "taking" | "drop" | "delete" | "erase"
        ) && !negated(words, i)
        {
            let me_at = (i + 1..(i + 4).min(words.len()))
                .find(|&j| matches!(w(j), "me" | "my" | "number" | "us"));
            if let Some(m) = me_at {
                let ends = words[m + 1..].iter().all(|x| trailing(x));
                if (w(m) == "me" && ends) || mailing_list(words, m + 1) {
                    return true;
                }
            }
        }
        // "I'd like to be removed from your marketing list".
        if matches!(word, "removed" | "unlisted")
            && matches!(w(i.wrapping_sub(1)), "be" | "been" | "get" | "getting")
            && mailing_list(words, i + 1)
        {
            return true;
        }
        // "I want out of your mailing list".
        if word == "out" && w(i + 1) == "of" && i > 0 && mailing_list(words, i + 2) {
            return true;
        }
        // "cancel my subscription", "cancel the newsletter".
        if word == "cancel" && !negated(words, i) {
            let next: Vec<&str> = (i + 1..(i + 4).min(words.len())).map(w).collect();
            if next
                .iter()
                .any(|n| matches!(*n, "subscription" | "subscriptions") || messaging(n))
            {
                return true;
            }
        }
        // "leave me alone".
        if word == "leave" && w(i + 1) == "me" && w(i + 2) == "alone" {
            return true;
        }
    }
    false
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
