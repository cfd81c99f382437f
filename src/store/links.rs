//! One customer, two ids: a customer is known by their number (wa_id)
//! and, since Meta introduced them, by a business-scoped user id (BSUID).
//! Meta sends either or both, so each id's pseudonymous key could name a
//! contact of its own. Whenever a payload carries both, the store records
//! a link, `alias key → canonical key` (keyed hashes only: no raw id), and
//! every way in (webhook, admin API, campaigns, console) resolves a key
//! through it, so both ids name one contact: its consent, export and
//! erasure cover both.
//!
//! The canonical contact is the one seen first: a customer first seen
//! with only a user id keeps that contact when their number shows up
//! (the number is linked to it), and one first seen with a number keeps
//! it when their user id shows up. The raw ids themselves live only in
//! the contact's profile and events, sealed under its data key.

use super::{Resolved, Store, StoreError};
use crate::domain::ContactKey;

/// What to do about one customer's ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The contact their events go to.
    pub canonical: ContactKey,
    /// A link to record, `(alias, canonical)`, when it is new.
    pub link: Option<(ContactKey, ContactKey)>,
    /// Both ids already name different contacts (seen apart before links
    /// existed, or linked apart by a race): nothing is merged.
    pub conflict: bool,
}

/// Decides the canonical contact of a customer from the keys of the ids
/// a payload gives (`wa`: their number's, `user`: their user id's) and
/// what the store knows about each. `None` without any id.
pub fn decide(
    wa: Option<(&ContactKey, &Resolved)>,
    user: Option<(&ContactKey, &Resolved)>,
) -> Option<Decision> {
    let canonical_of = |(k, r): (&ContactKey, &Resolved)| r.link.clone().unwrap_or(k.clone());
    let plain = |canonical: ContactKey| Decision {
        canonical,
        link: None,
        conflict: false,
    };
    let linked = |alias: &ContactKey, canonical: ContactKey| Decision {
        link: Some((alias.clone(), canonical.clone())),
        canonical,
        conflict: false,
    };
    let conflict = |canonical: ContactKey| Decision {
        canonical,
        link: None,
        conflict: true,
    };
    let (w, u) = match (wa, user) {
        (None, None) => return None,
        (Some(one), None) | (None, Some(one)) => return Some(plain(canonical_of(one))),
        (Some(w), Some(u)) => (w, u),
    };
    let (cw, cu) = (canonical_of(w), canonical_of(u));
    if cw == cu {
        return Some(plain(cw));
    }
    Some(match (&w.1.link, &u.1.link) {
        (Some(_), Some(_)) => conflict(cw),
        // The number is linked (to the contact first seen by user id, or
        // to another): the user id joins it unless it has data of its own.
        (Some(_), None) if u.1.known => conflict(cw),
        (Some(_), None) => linked(u.0, cw),
        (None, Some(_)) if w.1.known => conflict(cw),
        (None, Some(_)) => linked(w.0, cu),
        // Neither is linked yet: the contact seen first stays.
        (None, None) if w.1.known || !u.1.known => linked(u.0, cw),
        (None, None) => linked(w.0, cu),
    })
}

/// The canonical contact of a key (the key itself when it is no alias).
pub async fn canonical(store: &dyn Store, key: ContactKey) -> Result<ContactKey, StoreError> {
    let resolved = store.resolve_contacts(std::slice::from_ref(&key)).await?;
    Ok(resolved
        .into_iter()
        .next()
        .and_then(|r| r.link)
        .unwrap_or(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: char) -> ContactKey {
        ContactKey::parse(&c.to_string().repeat(32)).expect("key")
    }
    fn r(link: Option<char>, known: bool) -> Resolved {
        Resolved {
            link: link.map(key),
            known,
        }
    }
    fn both(w: Resolved, u: Resolved) -> Decision {
        decide(Some((&key('a'), &w)), Some((&key('b'), &u))).expect("decision")
    }

    #[test]
    fn a_new_customer_with_both_ids_is_known_by_the_number_and_the_user_id_is_linked() {
        let d = both(r(None, false), r(None, false));
        assert_eq!(d.canonical, key('a'));
        assert_eq!(d.link, Some((key('b'), key('a'))));
    }

    #[test]
    fn a_customer_first_seen_by_user_id_keeps_that_contact() {
        let d = both(r(None, false), r(None, true));
        assert_eq!(d.canonical, key('b'));
        assert_eq!(d.link, Some((key('a'), key('b'))));
    }

    #[test]
    fn a_customer_first_seen_by_number_keeps_that_contact() {
        let d = both(r(None, true), r(None, false));
        assert_eq!(d.canonical, key('a'));
        assert_eq!(d.link, Some((key('b'), key('a'))));
    }

    #[test]
    fn a_known_link_is_followed_and_nothing_new_is_written() {
        let d = both(r(Some('b'), false), r(None, true));
        assert_eq!((d.canonical, d.link), (key('b'), None));
        let d = both(r(None, true), r(Some('a'), false));
        assert_eq!((d.canonical, d.link), (key('a'), None));
        let one = decide(None, Some((&key('b'), &r(Some('a'), false)))).expect("d");
        assert_eq!((one.canonical, one.link), (key('a'), None));
    }

    #[test]
    fn an_id_that_joins_a_linked_customer_is_linked_to_their_contact() {
        let d = both(r(Some('c'), false), r(None, false));
        assert_eq!(d.canonical, key('c'));
        assert_eq!(d.link, Some((key('b'), key('c'))));
    }

    #[test]
    fn two_contacts_linked_apart_are_not_merged() {
        let d = both(r(Some('c'), false), r(Some('d'), false));
        assert!(d.conflict && d.link.is_none());
        assert_eq!(d.canonical, key('c'));
    }
}
