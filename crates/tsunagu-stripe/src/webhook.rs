//! Webhook signatures (NOTES §2): `Stripe-Signature: t=…,v1=…[,v1=…]`, where each `v1` is the
//! lowercase hex HMAC-SHA256 of `"{t}.{raw body}"` under the endpoint's `whsec_…` secret. Other
//! schemes (`v0`) are ignored. Checked over the raw bytes before anything parses them, compared
//! in constant time, and refused when `t` is more than the tolerance away from now.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Stripe's default tolerance (seconds).
pub const TOLERANCE_S: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Stripe-Signature header")]
    Missing,
    #[error("Stripe-Signature has no timestamp or no v1 signature")]
    Malformed,
    #[error("Stripe-Signature timestamp is outside the tolerance")]
    Stale,
    #[error("no v1 signature matches")]
    Mismatch,
}

/// The `v1` signature of `body` signed at `t` (Unix seconds) under `secret`.
pub fn v1(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Checks `header` for `body` under any of `secrets` at `now_s`. Returns the index of the
/// secret that matched.
pub fn verify(header: Option<&str>, body: &[u8], secrets: &[&str], now_s: i64) -> Result<usize, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else { continue };
        match k {
            "t" => t = v.parse::<i64>().ok(),
            "v1" => sigs.push(v),
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if sigs.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now_s - t).abs() > TOLERANCE_S {
        return Err(SignatureError::Stale);
    }
    for (i, secret) in secrets.iter().enumerate() {
        let expected = v1(secret, t, body);
        if sigs.iter().any(|s| bool::from(expected.as_bytes().ct_eq(s.as_bytes()))) {
            return Ok(i);
        }
    }
    Err(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vector computed independently (`printf '1492774577.{"id":"evt_1"}' | openssl dgst
    /// -sha256 -hmac whsec_test_secret`).
    #[test]
    fn independent_vector_and_every_refusal() {
        let body = br#"{"id":"evt_1"}"#;
        let sig = v1("whsec_test_secret", 1_492_774_577, body);
        assert_eq!(sig, "799c4ba7bb339f3c8601adfd112f0e477c930a268be1243d341abb8286501c2f");
        let now = 1_492_774_600;
        let good = format!("t=1492774577,v1={sig}");
        assert_eq!(verify(Some(&good), body, &["whsec_test_secret"], now), Ok(0));
        // Several v1 (secret rotation) and an unknown scheme.
        let rotated = format!("t=1492774577,v0=abc,v1={},v1={sig}", "0".repeat(64));
        assert_eq!(verify(Some(&rotated), body, &["whsec_other", "whsec_test_secret"], now), Ok(1));
        assert_eq!(verify(None, body, &["whsec_test_secret"], now), Err(SignatureError::Missing));
        assert_eq!(
            verify(Some(&format!("v1={sig}")), body, &["whsec_test_secret"], now),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(Some("t=1492774577,v0=x"), body, &["whsec_test_secret"], now),
            Err(SignatureError::Malformed)
        );
        assert_eq!(verify(Some(&good), body, &["whsec_test_secret"], now + 301), Err(SignatureError::Stale));
        assert_eq!(verify(Some(&good), body, &["whsec_test_secret"], now - 400), Err(SignatureError::Stale));
        assert_eq!(
            verify(Some(&good), b"{\"id\": \"evt_1\"}", &["whsec_test_secret"], now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(Some(&good), body, &["whsec_other"], now), Err(SignatureError::Mismatch));
    }
}
