//! Two-factor codes: TOTP (RFC 6238: HMAC-SHA1, 6 digits, 30 s, one step
//! of drift either way) by the `totp-rs` crate, the `otpauth://` link an
//! authenticator app reads, and its QR code drawn as SVG by the `qrcode`
//! crate.

use totp_rs::{Algorithm, TOTP};

/// Seconds per code.
pub const STEP: u64 = 30;

/// A new random secret (20 bytes, as RFC 4226 recommends), base32.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 20];
    rand::fill(&mut bytes);
    base32(&bytes)
}

fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

fn totp(secret: &str) -> Option<TOTP> {
    let bytes = totp_rs::Secret::Encoded(secret.to_owned())
        .to_bytes()
        .ok()?;
    TOTP::new(Algorithm::SHA1, 6, 1, STEP, bytes).ok()
}

/// The time step (`now / 30`, give or take one) whose code `code` is, if
/// it is one; the caller marks that step used so the code works once.
pub fn matching_step(secret: &str, code: &str, now: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = totp(secret)?;
    let step = now / STEP;
    [step, step.saturating_sub(1), step + 1]
        .into_iter()
        .find(|s| super::same(&totp.generate(s * STEP), code))
}

/// The code of `secret` at `time` (for tests and the enrolment check).
pub fn code_at(secret: &str, time: u64) -> Option<String> {
    totp(secret).map(|t| t.generate(time))
}

/// The `otpauth://` link of an operator's secret, for an authenticator.
pub fn link(secret: &str, email: &str) -> String {
    let label = encode(&format!("whatsify:{email}"));
    format!(
        "otpauth://totp/{label}?secret={secret}&issuer=whatsify&algorithm=SHA1&digits=6&period=30"
    )
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The link's QR code as an SVG image (empty when it does not fit).
pub fn qr_svg(link: &str) -> String {
    qrcode::QrCode::new(link.as_bytes()).map_or_else(
        |_| String::new(),
        |code| {
            code.render::<qrcode::render::svg::Color>()
                .min_dimensions(220, 220)
                .quiet_zone(true)
                .build()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_sha1_vector() {
        // RFC 6238, appendix B: the 20-byte secret "12345678901234567890"
        // at T = 59 gives 94287082 (8 digits); its last 6 are the code.
        let secret = base32(b"12345678901234567890");
        assert_eq!(code_at(&secret, 59).as_deref(), Some("287082"));
        assert_eq!(matching_step(&secret, "287082", 59), Some(1));
        assert_eq!(matching_step(&secret, "287082", 59 + 30 * 5), None);
        assert_eq!(matching_step(&secret, "28708", 59), None);
    }

    #[test]
    fn a_secret_makes_a_link_and_a_qr_code() {
        let s = new_secret();
        assert_eq!(s.len(), 32);
        let l = link(&s, "ana@example.org");
        assert!(l.starts_with("otpauth://totp/whatsify%3Aana@example.org?secret="));
        assert!(qr_svg(&l).contains("<svg"));
    }
}
