//! Operators' passwords: the rules a new one must meet and its Argon2id
//! hash (the `argon2` crate's defaults, in the PHC string format, with a
//! random salt).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// The shortest password accepted.
pub const MIN_LEN: usize = 12;

/// Common passwords (Django's list of 20,000, after Royce Williams),
/// lower-cased: a password that is one of them, or one of them with
/// digits and symbols around it, is refused.
static COMMON: &str = include_str!("common-passwords.txt");

/// Why a new password is refused (said to the operator as is).
pub fn weakness(password: &str, email: &str) -> Option<&'static str> {
    if password.chars().count() < MIN_LEN {
        return Some("The password must be at least 12 characters long.");
    }
    let lower = password.to_lowercase();
    let email = email.to_lowercase();
    let local = email.split('@').next().unwrap_or("");
    if lower.contains(&email) || (local.len() >= 3 && lower.contains(local)) {
        return Some("The password must not contain your email address.");
    }
    let core = lower.trim_matches(|c: char| !c.is_alphabetic());
    let common = |w: &str| !w.is_empty() && COMMON.lines().any(|l| l == w);
    if common(&lower) || (core.len() >= 4 && common(core)) {
        return Some("That password is on a list of common passwords; choose another.");
    }
    if lower
        .chars()
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        < 4
    {
        return Some("The password repeats too few characters; choose another.");
    }
    None
}

/// The Argon2id hash of `password`, as a PHC string.
pub fn hash(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string `stored`.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Spends the time of one verification (for an unknown email), so the
/// answer's timing does not tell which emails have accounts.
pub fn verify_nothing(password: &str) {
    static DUMMY: std::sync::LazyLock<Option<String>> =
        std::sync::LazyLock::new(|| hash("not a password of anyone").ok());
    if let Some(h) = DUMMY.as_deref() {
        let _ = verify(password, h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_common_and_email_passwords_are_refused() {
        let email = "ana.lopez@example.org";
        assert!(weakness("short-pass1", email).is_some());
        assert!(weakness("password1234", email).is_some());
        assert!(weakness("Password1234!", email).is_some());
        assert!(weakness("qwertyuiop12", email).is_some());
        assert!(weakness("ana.lopez-secret-99", email).is_some());
        assert!(weakness("aaaaaaaaaaaaaaaa", email).is_some());
        assert!(weakness("violet-harbour-lantern-42", email).is_none());
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("violet-harbour-lantern-42").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("violet-harbour-lantern-42", &h));
        assert!(!verify("violet-harbour-lantern-43", &h));
        assert!(!verify("x", "not a phc string"));
    }
}
