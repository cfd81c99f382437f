//! Keyed hashes (HMAC-SHA256) that stand in for personal identifiers in
//! logs and storage keys. Without the key, a pseudonym cannot be tied back
//! to a phone number by trying every number.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::Key32;
use crate::domain::{BusinessId, ContactId, ContactKey};

type HmacSha256 = Hmac<Sha256>;

/// Computes pseudonyms under one key.
#[derive(Clone)]
pub struct Pseudonymizer {
    key: Key32,
}

impl Pseudonymizer {
    /// Uses `pseudonym_key`, or a key derived from the master key when unset.
    pub fn new(master_key: &Key32, pseudonym_key: Option<&Key32>) -> Self {
        let key = match pseudonym_key {
            Some(k) => k.clone(),
            None => {
                let mut out = [0u8; 32];
                out.copy_from_slice(&mac(master_key.expose(), b"whatsify pseudonym key v1"));
                Key32::new(out)
            }
        };
        Pseudonymizer { key }
    }

    /// Uses `key` as it is (the pepper [`crate::privacy::keys::load`] gives).
    pub fn with_key(key: &Key32) -> Self {
        Pseudonymizer { key: key.clone() }
    }

    /// The pseudonymous id of a contact of the `default` business (see
    /// [`Pseudonymizer::contact_key_in`]).
    pub fn contact_key(&self, id: &ContactId) -> ContactKey {
        self.contact_key_in(&BusinessId::default_business(), id)
    }

    /// The pseudonymous id of the contact `id` of `business`: the same
    /// person writing to two businesses is two contacts. The `default`
    /// business keeps the keys of releases before businesses existed, so
    /// a store they wrote reads on without a migration.
    pub fn contact_key_in(&self, business: &BusinessId, id: &ContactId) -> ContactKey {
        let full = if business.is_default() {
            mac(self.key.expose(), id.canonical().as_bytes())
        } else {
            let scoped = format!("business:{}\0{}", business.as_str(), id.canonical());
            mac(self.key.expose(), scoped.as_bytes())
        };
        let mut short = [0u8; 16];
        short.copy_from_slice(&full[..16]);
        ContactKey::from_hash(&short)
    }

    /// A short keyed hash of any identifier (message ids embed the phone
    /// number, so logs and de-duplication keys use this instead).
    pub fn tag(&self, domain: &str, value: &str) -> String {
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(self.key.expose())
            .expect("HMAC takes keys of any length");
        m.update(domain.as_bytes());
        m.update(b"\0");
        m.update(value.as_bytes());
        hex::encode(&m.finalize().into_bytes()[..16])
    }
}

fn mac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m =
        <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(data);
    let mut out = [0u8; 32];
    out.copy_from_slice(&m.finalize().into_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_contact_always_gets_the_same_pseudonym_and_others_differ() {
        let p = Pseudonymizer::new(&Key32::new([7; 32]), None);
        let a = ContactId::from_parts(Some("16505550101"), None).expect("id");
        let b = ContactId::from_parts(Some("16505550102"), None).expect("id");
        assert_eq!(p.contact_key(&a), p.contact_key(&a));
        assert_ne!(p.contact_key(&a), p.contact_key(&b));
        assert!(!p.contact_key(&a).as_str().contains("16505550101"));
    }

    #[test]
    fn one_person_is_a_different_contact_at_each_business() {
        let p = Pseudonymizer::with_key(&Key32::new([7; 32]));
        let a = ContactId::from_parts(Some("16505550101"), None).expect("id");
        let [shop, cafe] = ["shop", "cafe"].map(|b| BusinessId::parse(b).expect("id"));
        assert_ne!(p.contact_key_in(&shop, &a), p.contact_key_in(&cafe, &a));
        assert_ne!(p.contact_key_in(&shop, &a), p.contact_key(&a));
        // The default business keeps the keys earlier releases stored.
        let legacy = mac(&[7; 32], b"wa:16505550101");
        assert_eq!(
            p.contact_key_in(&BusinessId::default_business(), &a)
                .as_str(),
            hex::encode(&legacy[..16])
        );
    }

    #[test]
    fn another_key_gives_other_pseudonyms() {
        let a = ContactId::from_parts(Some("16505550101"), None).expect("id");
        let p1 = Pseudonymizer::new(&Key32::new([7; 32]), None);
        let p2 = Pseudonymizer::new(&Key32::new([7; 32]), Some(&Key32::new([9; 32])));
        assert_ne!(p1.contact_key(&a), p2.contact_key(&a));
    }
}
