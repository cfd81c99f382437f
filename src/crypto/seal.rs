//! Authenticated encryption of stored content with XChaCha20-Poly1305.
//!
//! A sealed value is `version (1 byte) || nonce (24 bytes) || ciphertext`.
//! The associated data binds a value to where it is stored (for example the
//! contact's pseudonymous key), so a ciphertext moved to another contact's
//! record fails to open. Contacts' values are sealed under the contact's
//! own data key ([`crate::privacy::keys`]).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::config::Key32;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;

/// Why a sealed value could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("sealed value is truncated or of an unknown version")]
    Malformed,
    #[error("sealed value does not authenticate (wrong key, wrong context, or tampered)")]
    Forged,
    #[error("encryption failed")]
    Seal,
    #[error("sealed under a master key that is not configured")]
    UnknownKey,
}

/// Seals and opens values under one key.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl Sealer {
    pub fn new(key: &Key32) -> Self {
        let cipher = XChaCha20Poly1305::new(key.expose().into());
        Sealer { cipher }
    }

    /// Encrypts `plaintext`, bound to `context`, under a fresh random nonce.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (nonce, ct) = encrypt(&self.cipher, plaintext, context)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts a value sealed by [`Sealer::seal`] with the same context.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != VERSION {
            return Err(CryptoError::Malformed);
        }
        let nonce: [u8; NONCE_LEN] = sealed[1..1 + NONCE_LEN]
            .try_into()
            .map_err(|_| CryptoError::Malformed)?;
        self.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &sealed[1 + NONCE_LEN..],
                    aad: context,
                },
            )
            .map_err(|_| CryptoError::Forged)
    }
}

/// Encrypts `plaintext`, bound to `context`, under a fresh random nonce:
/// the nonce and the ciphertext.
pub(crate) fn encrypt(
    cipher: &XChaCha20Poly1305,
    plaintext: &[u8],
    context: &[u8],
) -> Result<([u8; NONCE_LEN], Vec<u8>), CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::fill(&mut nonce);
    let ct = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: context,
            },
        )
        .map_err(|_| CryptoError::Seal)?;
    Ok((nonce, ct))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(k: u8) -> Sealer {
        Sealer::new(&Key32::new([k; 32]))
    }

    #[test]
    fn a_sealed_value_opens_and_hides_the_plaintext() {
        let s = sealer(1);
        let sealed = s.seal(b"hello Ana", b"contact-1").expect("seal");
        assert!(!sealed.windows(9).any(|w| w == b"hello Ana"));
        assert_eq!(s.open(&sealed, b"contact-1").expect("open"), b"hello Ana");
    }

    #[test]
    fn the_same_plaintext_seals_differently_each_time() {
        let s = sealer(1);
        assert_ne!(
            s.seal(b"x", b"c").expect("seal"),
            s.seal(b"x", b"c").expect("seal")
        );
    }

    #[test]
    fn another_key_another_context_or_a_flipped_bit_fail_to_open() {
        let sealed = sealer(1).seal(b"hello", b"contact-1").expect("seal");
        assert_eq!(
            sealer(2).open(&sealed, b"contact-1"),
            Err(CryptoError::Forged)
        );
        assert_eq!(
            sealer(1).open(&sealed, b"contact-2"),
            Err(CryptoError::Forged)
        );
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(sealer(1).open(&bad, b"contact-1"), Err(CryptoError::Forged));
        assert_eq!(
            sealer(1).open(&sealed[..10], b"contact-1"),
            Err(CryptoError::Malformed)
        );
    }

    proptest::proptest! {
        /// Any value under any context opens again to itself, and only
        /// with the same key and context: a flipped bit anywhere, another
        /// context or another key is refused.
        #[test]
        fn sealing_round_trips_and_rejects_tampering(
            plain in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            context in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            flip in proptest::prelude::any::<proptest::sample::Index>(),
            bit in 0u8..8,
        ) {
            let s = sealer(7);
            let sealed = s.seal(&plain, &context).expect("seal");
            proptest::prop_assert_eq!(s.open(&sealed, &context).expect("open"), plain);
            let mut tampered = sealed.clone();
            let at = flip.index(tampered.len());
            tampered[at] ^= 1 << bit;
            proptest::prop_assert!(s.open(&tampered, &context).is_err());
            let mut other = context.clone();
            other.push(0);
            proptest::prop_assert!(s.open(&sealed, &other).is_err());
            proptest::prop_assert!(sealer(8).open(&sealed, &context).is_err());
        }
    }
}
