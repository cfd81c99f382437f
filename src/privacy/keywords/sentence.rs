//! Reading an opt-out (or an opt-in) in a sentence: the words people use
//! for messages and for stopping them, negations, and one rule per way of
//! asking ("stop sending me promotions", "unsubscribe me", "no more
//! messages please"), each with the sentences it must not take for one.

/// The words of a normalised message: letters and digits only, with
/// apostrophes dropped ("don't" is "dont").
pub(super) fn tokens(n: &str) -> Vec<String> {
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

pub(super) fn is_opt_in_phrase(words: &[String]) -> bool {
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

/// The word at `i`, or "" past either end.
fn word(words: &[String], i: usize) -> &str {
    words.get(i).map(String::as_str).unwrap_or("")
}

/// Does the message ask, in a sentence, to stop marketing messages?
pub(super) fn is_opt_out_sentence(words: &[String]) -> bool {
    if wants_messages(words) {
        return false;
    }
    if only_stop(words) {
        return true;
    }
    let mentions_messaging = words.iter().any(|x| messaging(x) || sending(x));
    (0..words.len()).any(|i| {
        unsubscribe_at(words, i)
            || opt_out_at(words, i)
            || withdraw_at(words, i)
            || stop_at(words, i, mentions_messaging)
            || no_more_at(words, i)
            || negative_at(words, i)
            || remove_at(words, i)
            || off_the_list_at(words, i)
            || cancel_at(words, i)
            || leave_alone_at(words, i)
    })
}

/// A message of only "stop" and a few polite words: "please stop",
/// "STOP STOP", "stop it now", "stop all", or a typo of it.
fn only_stop(words: &[String]) -> bool {
    let polite = [
        "please", "pls", "plz", "just", "ok", "okay", "now", "it", "thanks", "thx", "all",
    ];
    words.len() <= 5
        && words.iter().any(|x| x == "stop" || stop_typo(x))
        && words
            .iter()
            .all(|x| x == "stop" || stop_typo(x) || polite.contains(&x.as_str()))
}

/// "unsubscribe me", "how do I unsubscribe", "not interested.
/// Unsubscribe."; not "please don't unsubscribe me", "I unsubscribed by
/// mistake", "I pressed unsubscribe" or "is unsubscribing…".
fn unsubscribe_at(words: &[String], i: usize) -> bool {
    let w = |j: usize| word(words, j);
    is_unsubscribe(w(i))
        && !negated(words, i)
        && (!w(i).ends_with("ing") || matches!(w(i.wrapping_sub(1)), "im" | "am"))
        && !matches!(
            w(i.wrapping_sub(1)),
            "pressed" | "clicked" | "hit" | "tapped" | "the" | "an" | "a"
        )
        && !matches!(w(i + 1), "link" | "links" | "button" | "option" | "page")
}

/// "opt out", "opt me out", "optout"; of something, only of messages
/// ("opt out of insurance" is not one); "an opt-out option" is not a
/// request.
fn opt_out_at(words: &[String], i: usize) -> bool {
    let w = |j: usize| word(words, j);
    let out_at = if w(i) == "optout" {
        Some(i + 1)
    } else if w(i) == "opt" && (w(i + 1).starts_with("ou") || w(i + 1) == "ot") {
        Some(i + 2)
    } else if w(i) == "opt" && w(i + 2) == "out" {
        Some(i + 3)
    } else {
        None
    };
    out_at.is_some_and(|after| {
        !negated(words, i)
            && !matches!(w(after), "option" | "options" | "button" | "box" | "link")
            && (w(after) != "of"
                || matches!(w(after + 1), "everything" | "all" | "it")
                || mailing_list(words, after + 1))
    })
}

/// "withdraw my consent", "I revoke my consent".
fn withdraw_at(words: &[String], i: usize) -> bool {
    matches!(
        word(words, i),
        "withdraw" | "withdrawing" | "revoke" | "revoking" | "retract"
    ) && (i + 1..(i + 4).min(words.len())).any(|j| word(words, j) == "consent")
}

/// "stop sending me promotions", "stop the ads", "quit texting me", "block
/// promotions to my number": not negated, then messaging within a few
/// words (of the same clause). Or a "stop" that ends the message after
/// messages were mentioned or with a polite word.
fn stop_at(words: &[String], i: usize, mentions_messaging: bool) -> bool {
    let w = |j: usize| word(words, j);
    let word = w(i);
    // "end" is mostly a noun ("the end-of-season sale"): only as an
    // order, first in the message or after "please".
    let imperative = word != "end" || i == 0 || matches!(w(i - 1), "please" | "pls" | "just");
    // "I'd appreciate it if you stopped sending me promotions".
    let past_request = word == "stopped" && w(i.wrapping_sub(1)) == "you";
    if !((stopping(word) || stop_typo(word) || past_request) && imperative && !negated(words, i)) {
        return false;
    }
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
    word == "stop"
        && rest_trailing
        && (matches!(
            w(i.wrapping_sub(1)),
            "please" | "pls" | "plz" | "just" | "so"
        ) || (i + 1 < words.len())
            || mentions_messaging)
}

/// "no more messages please", "enough with the promotions"; not "no more
/// messages from the courier".
fn no_more_at(words: &[String], i: usize) -> bool {
    let w = |j: usize| word(words, j);
    let word = w(i);
    if !((word == "no" && w(i + 1) == "more") || word == "enough") {
        return false;
    }
    let from = if word == "no" { i + 2 } else { i + 1 };
    (from..(from + 3).min(words.len()))
        .find(|&j| messaging(w(j)))
        .is_some_and(|j| {
            let third_party = matches!(w(j + 1), "from" | "since")
                && !matches!(w(j + 2), "you" | "your" | "us" | "this" | "them");
            !third_party
        })
}

/// "don't send me promotions", "do not message me again", "I don't want
/// these offers anymore", "I no longer want messages", "I do not consent
/// to marketing"; not "never stop sending me deals".
fn negative_at(words: &[String], i: usize) -> bool {
    let w = |j: usize| word(words, j);
    let word = w(i);
    let negative_from = if negation(word) {
        Some(i + 1)
    } else if (word == "do" && w(i + 1) == "not") || (word == "no" && w(i + 1) == "longer") {
        Some(i + 2)
    } else {
        None
    };
    let Some(from) = negative_from else {
        return false;
    };
    if stopping(w(from)) || (w(from) == "ever" && stopping(w(from + 1))) {
        return false;
    }
    let rest: Vec<&str> = (from..(from + 9).min(words.len())).map(w).collect();
    let verb = rest.iter().position(|r| {
        sending(r) || matches!(*r, "want" | "need" | "wish" | "text" | "msg" | "consent")
    });
    verb.is_some_and(|v| refuses(rest[v], &rest[v + 1..]))
}

/// After a negation, does `verb` and what follows it refuse messages?
fn refuses(verb: &str, after: &[&str]) -> bool {
    let wanting = matches!(verb, "want" | "need" | "wish" | "consent");
    // "I don't want to miss the deals" wants them.
    let to_other = after.first() == Some(&"to")
        && after.get(1).is_some_and(|x| {
            !(sending(x) || matches!(*x, "be" | "see" | "hear" | "read" | "have"))
        });
    // The object is close, in the same clause: "don't send an invoice by
    // post, email is fine" is about the invoice.
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
    // Not getting something is a complaint ("I didn't get any messages
    // about my delivery") unless it is for good.
    let receiving = matches!(verb, "get" | "getting" | "receive" | "receiving");
    let wanted = matches!(verb, "want" | "need" | "wish");
    (object && (!receiving || again)) || (to_me && again && !wanted)
}

/// "remove me from your list", "take my number off your list", "not
/// interested, remove me"; not "take me off the waiting list".
fn remove_at(words: &[String], i: usize) -> bool {
    let w = |j: usize| word(words, j);
    if !matches!(
        w(i),
        "remove" | "removing" | "take" | "taking" | "drop" | "delete" | "erase"
    ) || negated(words, i)
    {
        return false;
    }
    let me_at =
        (i + 1..(i + 4).min(words.len())).find(|&j| matches!(w(j), "me" | "my" | "number" | "us"));
    me_at.is_some_and(|m| {
        let ends = words[m + 1..].iter().all(|x| trailing(x));
        (w(m) == "me" && ends) || mailing_list(words, m + 1)
    })
}

/// "I'd like to be removed from your marketing list", "I want out of
/// your mailing list".
fn off_the_list_at(words: &[String], i: usize) -> bool {
    let w = |j: usize| word(words, j);
    (matches!(w(i), "removed" | "unlisted")
        && matches!(w(i.wrapping_sub(1)), "be" | "been" | "get" | "getting")
        && mailing_list(words, i + 1))
        || (w(i) == "out" && w(i + 1) == "of" && i > 0 && mailing_list(words, i + 2))
}

/// "cancel my subscription", "cancel the newsletter".
fn cancel_at(words: &[String], i: usize) -> bool {
    word(words, i) == "cancel"
        && !negated(words, i)
        && (i + 1..(i + 4).min(words.len()))
            .map(|j| word(words, j))
            .any(|n| matches!(n, "subscription" | "subscriptions") || messaging(n))
}

/// "leave me alone".
fn leave_alone_at(words: &[String], i: usize) -> bool {
    word(words, i) == "leave" && word(words, i + 1) == "me" && word(words, i + 2) == "alone"
}
