//! Webhook signatures (NOTES §4): `X-Line-Signature` = base64(HMAC-SHA256(channel secret, raw
//! body)). Computed over the raw bytes, before anything parses them; compared in constant time.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The signature LINE sends for `body`.
pub fn sign(channel_secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(channel_secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// True when `header` is the signature of `body` under `channel_secret`.
pub fn verify(channel_secret: &str, body: &[u8], header: &str) -> bool {
    let expected = sign(channel_secret, body);
    expected.as_bytes().ct_eq(header.trim().as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// LINE's published example (NOTES §4, re-checked with openssl).
    #[test]
    fn lines_test_vector() {
        let body = br#"{"destination":"U8e742f61d673b39c7fff3cecb7536ef0","events":[]}"#;
        let secret = "8c570fa6dd201bb328f1c1eac23a96d8";
        assert_eq!(sign(secret, body), "GhRKmvmHys4Pi8DxkF4+EayaH0OqtJtaZxgTD9fMDLs=");
        assert!(verify(secret, body, "GhRKmvmHys4Pi8DxkF4+EayaH0OqtJtaZxgTD9fMDLs="));
        assert!(!verify(secret, body, "GhRKmvmHys4Pi8DxkF4+EayaH0OqtJtaZxgTD9fMDLt="));
        assert!(!verify("other", body, "GhRKmvmHys4Pi8DxkF4+EayaH0OqtJtaZxgTD9fMDLs="));
        assert!(!verify(secret, b"{}", ""));
    }
}
