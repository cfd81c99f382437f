//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>), so a
//! receiver can check a delivery with the project's libraries: the
//! `webhook-id`, `webhook-timestamp` (Unix s) and `webhook-signature`
//! headers, the last being `v1,` and the base64 HMAC-SHA256 of
//! `id.timestamp.body` under the secret's key. A secret is written
//! `whsec_` and the key's bytes in base64.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The `webhook-signature` value for a delivery.
pub fn signature(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::integrations::key_of;

    /// The Standard Webhooks project's own Rust library accepts what we
    /// sign, and refuses it once anything changes.
    #[test]
    fn the_reference_library_verifies_our_signatures() {
        let key: Vec<u8> = (1..=32).collect();
        let secret = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(&key)
        );
        assert_eq!(key_of(&secret), Ok(key.clone()));
        let verifier = standardwebhooks::Webhook::new(&secret).expect("secret");
        let id = "msg_2f1c0d";
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let body = br#"{"type":"contact.created","data":{"contact_id":"ab"}}"#;
        let headers = |sig: String, body_ts: u64| {
            let mut h = reqwest::header::HeaderMap::new();
            h.insert("webhook-id", id.parse().expect("header"));
            h.insert(
                "webhook-timestamp",
                body_ts.to_string().parse().expect("header"),
            );
            h.insert("webhook-signature", sig.parse().expect("header"));
            h
        };
        let sig = signature(&key, id, now, body);
        assert!(sig.starts_with("v1,"));
        assert!(verifier.verify(body, &headers(sig.clone(), now)).is_ok());
        let mut tampered = body.to_vec();
        tampered[10] ^= 1;
        assert!(
            verifier
                .verify(&tampered, &headers(sig.clone(), now))
                .is_err()
        );
        assert!(
            verifier.verify(body, &headers(sig, now + 1)).is_err(),
            "the timestamp is signed"
        );
        let other = signature(&[9; 32], id, now, body);
        assert!(verifier.verify(body, &headers(other, now)).is_err());
    }

    #[test]
    fn a_bad_secret_is_refused_with_why() {
        assert!(key_of("abc").expect_err("prefix").contains("whsec_"));
        assert!(key_of("whsec_!!!").expect_err("b64").contains("base64"));
        let short = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode([1u8; 8])
        );
        assert!(key_of(&short).expect_err("short").contains("8 bytes"));
    }
}
