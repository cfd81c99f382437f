//! Envelope encryption: every contact has its own random data key, and
//! everything stored about the contact (message bodies, profile, session,
//! history, queued messages) is sealed under it ([`crate::crypto::seal`]).
//! The data key is kept only wrapped (sealed) under a master key, with the
//! master key's id in front, so a new master key can be introduced while
//! data keys wrapped under the previous one stay readable until they are
//! rewrapped (`whatsify rotate-key`, and a background pass in `serve`).
//! Erasing a contact destroys its data key: whatever copy of its
//! ciphertext survives elsewhere (a Redis replica's backlog, a backup)
//! can no longer be opened.
//!
//! Values that belong to no contact (signed bodies we could not parse,
//! account-level events) are sealed under the master key itself, with its
//! id in front.
//!
//! With the embedded store and no `privacy.master_key` configured, the
//! keys live in a file beside the store (`keys.toml`, mode 0600), created
//! on first start: a master key and a separate pseudonym key (the pepper of
//! the keyed hashes that stand in for phone numbers).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Key32;
use crate::crypto::seal::{CryptoError, Sealer};
use crate::domain::ContactKey;

type HmacSha256 = Hmac<Sha256>;

/// Format byte of a wrapped data key.
const WRAPPED: u8 = 0x4b;
/// Format byte of a value sealed under a master key.
const MASTER_SEALED: u8 = 2;
const ID_LEN: usize = 4;
const NONCE_LEN: usize = 24;
/// Data keys kept unwrapped in memory (per process).
const CACHE: usize = 16_384;

/// How long a contact's data key is kept after its last message: the
/// retention period (profile and history live that long) and two days'
/// margin for what is written after the message.
pub fn data_key_ttl(retention_days: u32) -> std::time::Duration {
    std::time::Duration::from_secs((u64::from(retention_days.max(1)) + 2) * 86_400)
}

/// As [`data_key_ttl`], from the profile's time to live.
pub fn data_key_ttl_for(profile_ttl: std::time::Duration) -> std::time::Duration {
    profile_ttl + std::time::Duration::from_secs(2 * 86_400)
}

/// The short public id of a master key (8 hex digits): which key wrapped a
/// data key. It reveals nothing about the key.
pub fn key_id(key: &Key32) -> [u8; ID_LEN] {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key.expose())
        .expect("HMAC takes keys of any length");
    m.update(b"whatsify master key id v1");
    let mut id = [0u8; ID_LEN];
    id.copy_from_slice(&m.finalize().into_bytes()[..ID_LEN]);
    id
}

/// The master keys in force: the current one wraps new data keys; the
/// previous ones still unwrap.
pub struct MasterKeys {
    pub current: Key32,
    pub previous: Vec<Key32>,
}

struct Ring {
    /// The current key first.
    keys: Vec<([u8; ID_LEN], XChaCha20Poly1305)>,
}

impl Ring {
    fn new(keys: &MasterKeys) -> Ring {
        let mut out = vec![(
            key_id(&keys.current),
            XChaCha20Poly1305::new(keys.current.expose().into()),
        )];
        for k in &keys.previous {
            let id = key_id(k);
            if out.iter().all(|(i, _)| *i != id) {
                out.push((id, XChaCha20Poly1305::new(k.expose().into())));
            }
        }
        Ring { keys: out }
    }

    fn current(&self) -> &([u8; ID_LEN], XChaCha20Poly1305) {
        &self.keys[0]
    }

    fn find(&self, id: &[u8]) -> Option<&XChaCha20Poly1305> {
        self.keys.iter().find(|(i, _)| i == id).map(|(_, c)| c)
    }
}

/// Unwrapped data keys by contact, with the wrapped form they came from.
type Cache = HashMap<ContactKey, (Vec<u8>, Sealer)>;

/// The master keys and a cache of unwrapped data keys. Cheap to clone;
/// every clone sees a [`Keyring::replace`] (SIGHUP).
#[derive(Clone)]
pub struct Keyring {
    ring: Arc<RwLock<Arc<Ring>>>,
    cache: Arc<Mutex<Cache>>,
}

fn wrap_context(contact: &ContactKey) -> Vec<u8> {
    let mut c = b"whatsify data key\0".to_vec();
    c.extend_from_slice(contact.as_str().as_bytes());
    c
}

fn seal_with(
    id: &[u8; ID_LEN],
    cipher: &XChaCha20Poly1305,
    format: u8,
    plaintext: &[u8],
    context: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let (nonce, ct) = crate::crypto::seal::encrypt(cipher, plaintext, context)?;
    let mut out = Vec::with_capacity(1 + ID_LEN + NONCE_LEN + ct.len());
    out.push(format);
    out.extend_from_slice(id);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

impl Keyring {
    pub fn new(keys: &MasterKeys) -> Keyring {
        Keyring {
            ring: Arc::new(RwLock::new(Arc::new(Ring::new(keys)))),
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn ring(&self) -> Arc<Ring> {
        match self.ring.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts new master keys in force; answers whether they differ.
    pub fn replace(&self, keys: &MasterKeys) -> bool {
        let new = Ring::new(keys);
        let mut guard = match self.ring.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let same = guard.keys.len() == new.keys.len()
            && guard
                .keys
                .iter()
                .zip(&new.keys)
                .all(|((a, _), (b, _))| a == b);
        if !same {
            *guard = Arc::new(new);
        }
        !same
    }

    /// The current master key's id (hex).
    pub fn current_id(&self) -> String {
        hex::encode(self.ring().current().0)
    }

    /// Whether master keys other than the current one are in force.
    pub fn rotating(&self) -> bool {
        self.ring().keys.len() > 1
    }

    /// A new random data key for `contact`, and the key wrapped for storage.
    pub fn new_data_key(&self, contact: &ContactKey) -> Result<(Sealer, Vec<u8>), CryptoError> {
        let mut dek = [0u8; 32];
        rand::fill(&mut dek);
        let ring = self.ring();
        let (id, cipher) = ring.current();
        let wrapped = seal_with(id, cipher, WRAPPED, &dek, &wrap_context(contact))?;
        let sealer = Sealer::new(&Key32::new(dek));
        Ok((sealer, wrapped))
    }

    fn unwrap_raw(&self, contact: &ContactKey, wrapped: &[u8]) -> Result<Key32, CryptoError> {
        if wrapped.len() < 1 + ID_LEN + NONCE_LEN + 16 || wrapped[0] != WRAPPED {
            return Err(CryptoError::Malformed);
        }
        let ring = self.ring();
        let cipher = ring
            .find(&wrapped[1..1 + ID_LEN])
            .ok_or(CryptoError::UnknownKey)?;
        let nonce: [u8; NONCE_LEN] = wrapped[1 + ID_LEN..1 + ID_LEN + NONCE_LEN]
            .try_into()
            .map_err(|_| CryptoError::Malformed)?;
        let plain = cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &wrapped[1 + ID_LEN + NONCE_LEN..],
                    aad: &wrap_context(contact),
                },
            )
            .map_err(|_| CryptoError::Forged)?;
        let dek: [u8; 32] = plain.try_into().map_err(|_| CryptoError::Malformed)?;
        Ok(Key32::new(dek))
    }

    /// The contact's data key from its stored (wrapped) form.
    pub fn unwrap(&self, contact: &ContactKey, wrapped: &[u8]) -> Result<Sealer, CryptoError> {
        if let Ok(cache) = self.cache.lock()
            && let Some((w, s)) = cache.get(contact)
            && w == wrapped
        {
            return Ok(s.clone());
        }
        let sealer = Sealer::new(&self.unwrap_raw(contact, wrapped)?);
        self.remember(contact, wrapped, &sealer);
        Ok(sealer)
    }

    /// Keeps an unwrapped data key for the next use.
    pub fn remember(&self, contact: &ContactKey, wrapped: &[u8], sealer: &Sealer) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE && !cache.contains_key(contact) {
                // Bounded: drop an arbitrary entry (a miss costs one unwrap).
                if let Some(k) = cache.keys().next().cloned() {
                    cache.remove(&k);
                }
            }
            cache.insert(contact.clone(), (wrapped.to_vec(), sealer.clone()));
        }
    }

    /// The data key this process last used for `contact`, if any.
    pub fn cached(&self, contact: &ContactKey) -> Option<(Vec<u8>, Sealer)> {
        self.cache.lock().ok()?.get(contact).cloned()
    }

    /// Forgets a contact's data key (it was destroyed or replaced).
    pub fn forget(&self, contact: &ContactKey) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(contact);
        }
    }

    /// The same data key wrapped under the current master key, or `None`
    /// when it already is.
    pub fn rewrap(
        &self,
        contact: &ContactKey,
        wrapped: &[u8],
    ) -> Result<Option<Vec<u8>>, CryptoError> {
        let ring = self.ring();
        let (id, cipher) = ring.current();
        if wrapped.get(1..1 + ID_LEN) == Some(&id[..]) {
            return Ok(None);
        }
        let dek = self.unwrap_raw(contact, wrapped)?;
        seal_with(id, cipher, WRAPPED, dek.expose(), &wrap_context(contact)).map(Some)
    }

    /// Seals a value that belongs to no contact under the current master key.
    pub fn seal_system(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let ring = self.ring();
        let (id, cipher) = ring.current();
        seal_with(id, cipher, MASTER_SEALED, plaintext, context)
    }

    /// Opens a value sealed by [`Keyring::seal_system`] under any master
    /// key in force.
    pub fn open_system(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < 1 + ID_LEN + NONCE_LEN + 16 || sealed[0] != MASTER_SEALED {
            return Err(CryptoError::Malformed);
        }
        let ring = self.ring();
        let cipher = ring
            .find(&sealed[1..1 + ID_LEN])
            .ok_or(CryptoError::UnknownKey)?;
        let nonce: [u8; NONCE_LEN] = sealed[1 + ID_LEN..1 + ID_LEN + NONCE_LEN]
            .try_into()
            .map_err(|_| CryptoError::Malformed)?;
        cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &sealed[1 + ID_LEN + NONCE_LEN..],
                    aad: context,
                },
            )
            .map_err(|_| CryptoError::Forged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(n: u8) -> ContactKey {
        ContactKey::from_hash(&[n; 16])
    }

    fn ring(current: u8, previous: &[u8]) -> Keyring {
        Keyring::new(&MasterKeys {
            current: Key32::new([current; 32]),
            previous: previous.iter().map(|p| Key32::new([*p; 32])).collect(),
        })
    }

    #[test]
    fn a_data_key_unwraps_only_for_its_contact_and_under_a_known_master_key() {
        let r = ring(1, &[]);
        let (sealer, wrapped) = r.new_data_key(&contact(1)).expect("new");
        let sealed = sealer.seal(b"hola", b"ctx").expect("seal");
        let fresh = ring(1, &[]);
        let again = fresh.unwrap(&contact(1), &wrapped).expect("unwrap");
        assert_eq!(again.open(&sealed, b"ctx").expect("open"), b"hola");
        assert_eq!(
            fresh.unwrap(&contact(2), &wrapped).err(),
            Some(CryptoError::Forged)
        );
        assert_eq!(
            ring(9, &[]).unwrap(&contact(1), &wrapped).err(),
            Some(CryptoError::UnknownKey)
        );
    }

    #[test]
    fn two_contacts_get_different_data_keys() {
        let r = ring(1, &[]);
        let (a, _) = r.new_data_key(&contact(1)).expect("new");
        let (b, _) = r.new_data_key(&contact(1)).expect("new");
        let sealed = a.seal(b"x", b"c").expect("seal");
        assert_eq!(b.open(&sealed, b"c"), Err(CryptoError::Forged));
    }

    #[test]
    fn rotation_keeps_old_data_readable_and_rewraps_to_the_new_key() {
        let old = ring(1, &[]);
        let (sealer, wrapped) = old.new_data_key(&contact(3)).expect("new");
        let sealed = sealer.seal(b"secret", b"ctx").expect("seal");
        let system = old.seal_system(b"body", b"quarantine").expect("seal");

        let rotated = ring(2, &[1]);
        assert!(rotated.rotating());
        let still = rotated.unwrap(&contact(3), &wrapped).expect("old key");
        assert_eq!(still.open(&sealed, b"ctx").expect("open"), b"secret");
        assert_eq!(
            rotated.open_system(&system, b"quarantine").expect("open"),
            b"body"
        );

        let rewrapped = rotated
            .rewrap(&contact(3), &wrapped)
            .expect("rewrap")
            .expect("was under the old key");
        assert_eq!(
            rotated.rewrap(&contact(3), &rewrapped).expect("again"),
            None
        );
        let only_new = ring(2, &[]);
        let after = only_new.unwrap(&contact(3), &rewrapped).expect("new key");
        assert_eq!(after.open(&sealed, b"ctx").expect("open"), b"secret");
        assert_eq!(
            only_new.unwrap(&contact(3), &wrapped).err(),
            Some(CryptoError::UnknownKey)
        );
    }

    #[test]
    fn replace_reports_a_change_of_keys_only() {
        let r = ring(1, &[]);
        let same = MasterKeys {
            current: Key32::new([1; 32]),
            previous: vec![],
        };
        assert!(!r.replace(&same));
        let rotated = MasterKeys {
            current: Key32::new([2; 32]),
            previous: vec![Key32::new([1; 32])],
        };
        let before = r.current_id();
        assert!(r.replace(&rotated));
        assert_ne!(r.current_id(), before);
    }
}
