//! `X-Hub-Signature-256` verification: HMAC-SHA256 of the raw body under
//! the app secret, compared in constant time, before anything is parsed.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused. Every kind answers 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("X-Hub-Signature-256 header is missing")]
    Missing,
    #[error("X-Hub-Signature-256 header is not sha256=<64 hex digits>")]
    Malformed,
    #[error("signature does not match the body")]
    Mismatch,
}

/// Verifies signatures with the current app secret and, while secrets are
/// being rotated, the previous one.
#[derive(Clone)]
pub struct SignatureVerifier {
    secrets: Vec<SecretString>,
}

impl SignatureVerifier {
    pub fn new(current: SecretString, previous: Option<SecretString>) -> Self {
        let mut secrets = vec![current];
        secrets.extend(previous);
        SignatureVerifier { secrets }
    }

    /// Checks `header` (the raw header value, if any) against `body`.
    pub fn verify(&self, header: Option<&[u8]>, body: &[u8]) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let hex_digest = header
            .strip_prefix(b"sha256=")
            .ok_or(SignatureError::Malformed)?;
        if hex_digest.len() != 64 {
            return Err(SignatureError::Malformed);
        }
        let mut tag = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut tag).map_err(|_| SignatureError::Malformed)?;
        let mut ok = false;
        for secret in &self.secrets {
            let mut mac =
                <HmacSha256 as KeyInit>::new_from_slice(secret.expose_secret().as_bytes())
                    .expect("HMAC takes keys of any length");
            mac.update(body);
            // Check every secret, so timing does not tell which one matched.
            ok |= mac.verify_slice(&tag).is_ok();
        }
        if ok {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// The header value Meta would send for `body` signed with `secret`
/// (used by tests, the sample script's Rust twin and the load generator).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier() -> SignatureVerifier {
        SignatureVerifier::new(
            SecretString::from("current-secret-0123"),
            Some(SecretString::from("previous-secret-0123")),
        )
    }

    #[test]
    fn a_body_signed_with_the_current_or_previous_secret_is_accepted() {
        let body = b"{\"object\":\"x\"}";
        let v = verifier();
        assert_eq!(
            v.verify(Some(sign("current-secret-0123", body).as_bytes()), body),
            Ok(())
        );
        assert_eq!(
            v.verify(Some(sign("previous-secret-0123", body).as_bytes()), body),
            Ok(())
        );
    }

    #[test]
    fn a_body_signed_with_another_secret_is_rejected() {
        let body = b"{}";
        let h = sign("some-other-secret", body);
        assert_eq!(
            verifier().verify(Some(h.as_bytes()), body),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn missing_truncated_sha1_and_non_hex_headers_are_malformed() {
        let body = b"{}";
        let good = sign("current-secret-0123", body);
        let v = verifier();
        assert_eq!(v.verify(None, body), Err(SignatureError::Missing));
        assert_eq!(
            v.verify(Some(&good.as_bytes()[..40]), body),
            Err(SignatureError::Malformed)
        );
        let sha1 = good.replace("sha256=", "sha1=");
        assert_eq!(
            v.verify(Some(sha1.as_bytes()), body),
            Err(SignatureError::Malformed)
        );
        let zz = format!("sha256={}", "z".repeat(64));
        assert_eq!(
            v.verify(Some(zz.as_bytes()), body),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn a_changed_byte_in_the_body_breaks_the_signature() {
        let h = sign("current-secret-0123", b"{\"a\":1}");
        assert_eq!(
            verifier().verify(Some(h.as_bytes()), b"{\"a\":2}"),
            Err(SignatureError::Mismatch)
        );
    }
}
