//! LINE Login v2.1 (NOTES §5), the way a student links to an instructor's official account:
//! the authorize URL (state, nonce, PKCE S256, `openid profile`, `bot_prompt`), the callback's
//! parameters (`friendship_status_changed`, errors such as the user cancelling), the code
//! exchange, local ID token verification (HS256 with the Login channel's secret; iss, aud,
//! exp, nonce), the profile and the friendship status.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{LineError, classify};

pub const ISSUER: &str = "https://access.line.me";

/// The instructor's LINE Login channel (same provider as their official account: NOTES §0).
#[derive(Clone)]
pub struct LoginChannel {
    pub id: String,
    pub secret: String,
    pub redirect_uri: String,
}

impl std::fmt::Debug for LoginChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginChannel")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .field("redirect_uri", &self.redirect_uri)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BotPrompt {
    /// An add-friend option on the consent screen.
    Normal,
    /// A separate add-friend screen after consent.
    Aggressive,
}

/// A random PKCE verifier (43 characters of `[A-Za-z0-9-._~]`).
pub fn pkce_verifier() -> String {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).expect("the OS provides randomness");
    URL_SAFE_NO_PAD.encode(b)
}

/// `base64url(SHA-256(verifier))` without padding.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A random value for `state` or `nonce`.
pub fn random_state() -> String {
    let mut b = [0u8; 18];
    getrandom::getrandom(&mut b).expect("the OS provides randomness");
    URL_SAFE_NO_PAD.encode(b)
}

/// `GET {access_base}/oauth2/v2.1/authorize?…`.
pub fn authorize_url(
    access_base: &str,
    ch: &LoginChannel,
    state: &str,
    nonce: &str,
    code_verifier: &str,
    bot_prompt: Option<BotPrompt>,
) -> String {
    let challenge = pkce_challenge(code_verifier);
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", ch.id.as_str()),
        ("redirect_uri", ch.redirect_uri.as_str()),
        ("state", state),
        ("scope", "openid profile"),
        ("nonce", nonce),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    match bot_prompt {
        Some(BotPrompt::Normal) => params.push(("bot_prompt", "normal")),
        Some(BotPrompt::Aggressive) => params.push(("bot_prompt", "aggressive")),
        None => {}
    }
    let query = serde_urlencoded::to_string(&params).expect("strings always encode");
    format!("{}/oauth2/v2.1/authorize?{query}", access_base.trim_end_matches('/'))
}

/// What came back to the callback URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callback {
    Code {
        code: String,
        state: String,
        /// `Some(true)`: added or unblocked during login; `Some(false)`: no change; `None`: the
        /// add-friend option was not shown.
        friendship_status_changed: Option<bool>,
    },
    /// `ACCESS_DENIED` when the user cancelled, and the other documented codes.
    Error { error: String, description: String, state: Option<String> },
}

impl Callback {
    /// Read the callback's query parameters.
    pub fn parse(query: &str) -> Result<Callback, LineError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|e| LineError::Other { status: 0, message: format!("bad callback query: {e}") })?;
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if let Some(error) = get("error") {
            return Ok(Callback::Error {
                error,
                description: get("error_description").unwrap_or_default(),
                state: get("state"),
            });
        }
        match (get("code"), get("state")) {
            (Some(code), Some(state)) if !code.is_empty() => Ok(Callback::Code {
                code,
                state,
                friendship_status_changed: get("friendship_status_changed").map(|v| v == "true"),
            }),
            _ => Err(LineError::Other { status: 0, message: "callback without code or state".into() }),
        }
    }

    pub fn cancelled(&self) -> bool {
        matches!(self, Callback::Error { error, .. } if error.eq_ignore_ascii_case("ACCESS_DENIED"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LoginTokens {
    pub access_token: String,
    pub expires_in: i64,
    #[serde(default)]
    pub id_token: Option<String>,
    pub refresh_token: String,
    #[serde(default)]
    pub scope: String,
    pub token_type: String,
}

/// `POST {api_base}/oauth2/v2.1/token` (authorization code; codes are single-use even when
/// this fails).
pub async fn exchange_code(
    http: &reqwest::Client,
    api_base: &str,
    ch: &LoginChannel,
    code: &str,
    code_verifier: &str,
) -> Result<LoginTokens, LineError> {
    let resp = http
        .post(format!("{}/oauth2/v2.1/token", api_base.trim_end_matches('/')))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", ch.redirect_uri.as_str()),
            ("client_id", ch.id.as_str()),
            ("client_secret", ch.secret.as_str()),
            ("code_verifier", code_verifier),
        ])
        .send()
        .await
        .map_err(|e| if e.is_timeout() { LineError::Timeout } else { LineError::Server { status: 0 } })?;
    let status = resp.status().as_u16();
    let body = resp.text().await.map_err(|_| LineError::Timeout)?;
    if status != 200 {
        return Err(classify(status, &body));
    }
    serde_json::from_str(&body).map_err(|e| LineError::Other { status, message: e.to_string() })
}

/// The claims Tsunagu uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub picture: Option<String>,
}

/// Why an ID token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdTokenError {
    Malformed,
    Algorithm,
    Signature,
    Issuer,
    Audience,
    Expired,
    Nonce,
}

/// Verify a web-login ID token locally: HS256 under the Login channel's secret, issuer, audience
/// (the channel ID), expiry (`now_s` in Unix seconds) and nonce.
pub fn verify_id_token(id_token: &str, ch: &LoginChannel, nonce: &str, now_s: i64) -> Result<IdClaims, IdTokenError> {
    let mut parts = id_token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(IdTokenError::Malformed);
    };
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).map_err(|_| IdTokenError::Malformed)?)
            .map_err(|_| IdTokenError::Malformed)?;
    if header["alg"] != "HS256" {
        return Err(IdTokenError::Algorithm);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(ch.secret.as_bytes()).expect("any key length");
    mac.update(format!("{h}.{p}").as_bytes());
    let expected = mac.finalize().into_bytes();
    let given = URL_SAFE_NO_PAD.decode(s).map_err(|_| IdTokenError::Signature)?;
    if !bool::from(expected.as_slice().ct_eq(given.as_slice())) {
        return Err(IdTokenError::Signature);
    }
    let claims: IdClaims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).map_err(|_| IdTokenError::Malformed)?)
        .map_err(|_| IdTokenError::Malformed)?;
    if claims.iss != ISSUER {
        return Err(IdTokenError::Issuer);
    }
    if claims.aud != ch.id {
        return Err(IdTokenError::Audience);
    }
    if claims.exp <= now_s {
        return Err(IdTokenError::Expired);
    }
    if claims.nonce.as_deref().is_none_or(|n| !bool::from(n.as_bytes().ct_eq(nonce.as_bytes()))) {
        return Err(IdTokenError::Nonce);
    }
    Ok(claims)
}

/// Sign claims as LINE does for web login (HS256): for the sandbox and tests.
pub fn sign_id_token(claims: &serde_json::Value, secret: &str) -> String {
    let h = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"HS256"}"#);
    let p = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{h}.{p}").as_bytes());
    format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

async fn bearer_get<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: String,
    access_token: &str,
) -> Result<T, LineError> {
    let resp = http
        .get(url)
        .bearer_auth(access_token)
        .send()
        .await
        .map_err(|e| if e.is_timeout() { LineError::Timeout } else { LineError::Server { status: 0 } })?;
    let status = resp.status().as_u16();
    let body = resp.text().await.map_err(|_| LineError::Timeout)?;
    if status != 200 {
        return Err(classify(status, &body));
    }
    serde_json::from_str(&body).map_err(|e| LineError::Other { status, message: e.to_string() })
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginProfile {
    pub user_id: String,
    pub display_name: String,
    #[serde(default)]
    pub picture_url: Option<String>,
}

/// `GET {api_base}/v2/profile` with the user's access token.
pub async fn profile(http: &reqwest::Client, api_base: &str, access_token: &str) -> Result<LoginProfile, LineError> {
    bearer_get(http, format!("{}/v2/profile", api_base.trim_end_matches('/')), access_token).await
}

/// `GET {api_base}/friendship/v1/status`: a friend (and not blocked) of the linked account.
pub async fn friendship(http: &reqwest::Client, api_base: &str, access_token: &str) -> Result<bool, LineError> {
    #[derive(Deserialize)]
    struct F {
        #[serde(rename = "friendFlag")]
        friend_flag: bool,
    }
    let f: F =
        bearer_get(http, format!("{}/friendship/v1/status", api_base.trim_end_matches('/')), access_token).await?;
    Ok(f.friend_flag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch() -> LoginChannel {
        LoginChannel {
            id: "1660000000".into(),
            secret: "login-secret".into(),
            redirect_uri: "https://t.example/line/callback".into(),
        }
    }

    /// LINE's published PKCE example (NOTES §5).
    #[test]
    fn pkce_test_vector() {
        assert_eq!(
            pkce_challenge("wJKN8qz5t8SSI9lMFhBB6qwNkQBkuPZoCxzRhwLRUo1"),
            "BSCQwo_m8Wf0fpjmwkIKmPAJ1A7tiuRSNDnXzODS7QI"
        );
        let v = pkce_verifier();
        assert!((43..=128).contains(&v.len()));
        assert!(v.chars().all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)));
    }

    #[test]
    fn authorize_url_carries_state_nonce_pkce_and_bot_prompt() {
        let url = authorize_url(
            "https://access.line.me",
            &ch(),
            "st",
            "no",
            "wJKN8qz5t8SSI9lMFhBB6qwNkQBkuPZoCxzRhwLRUo1",
            Some(BotPrompt::Aggressive),
        );
        assert!(
            url.starts_with("https://access.line.me/oauth2/v2.1/authorize?response_type=code&client_id=1660000000")
        );
        for part in [
            "redirect_uri=https%3A%2F%2Ft.example%2Fline%2Fcallback",
            "state=st",
            "scope=openid+profile",
            "nonce=no",
            "code_challenge=BSCQwo_m8Wf0fpjmwkIKmPAJ1A7tiuRSNDnXzODS7QI",
            "code_challenge_method=S256",
            "bot_prompt=aggressive",
        ] {
            assert!(url.contains(part), "{part} missing from {url}");
        }
    }

    #[test]
    fn callback_parameters() {
        assert_eq!(
            Callback::parse("code=abc&state=st&friendship_status_changed=true").unwrap(),
            Callback::Code { code: "abc".into(), state: "st".into(), friendship_status_changed: Some(true) }
        );
        assert_eq!(
            Callback::parse("code=abc&state=st").unwrap(),
            Callback::Code { code: "abc".into(), state: "st".into(), friendship_status_changed: None }
        );
        let c =
            Callback::parse("error=ACCESS_DENIED&error_description=The+resource+owner+denied+the+request.&state=st")
                .unwrap();
        assert!(c.cancelled());
        assert!(Callback::parse("state=st").is_err());
    }

    #[test]
    fn id_tokens_are_checked_claim_by_claim() {
        let claims = |over: serde_json::Value| {
            let mut c = serde_json::json!({"iss": ISSUER, "sub": "U1234", "aud": "1660000000", "exp": 2000, "iat": 1000, "nonce": "n1", "name": "生徒"});
            for (k, v) in over.as_object().unwrap() {
                c[k] = v.clone();
            }
            c
        };
        let good = sign_id_token(&claims(serde_json::json!({})), "login-secret");
        assert_eq!(verify_id_token(&good, &ch(), "n1", 1500).unwrap().sub, "U1234");
        assert_eq!(verify_id_token(&good, &ch(), "n2", 1500), Err(IdTokenError::Nonce));
        assert_eq!(verify_id_token(&good, &ch(), "n1", 2000), Err(IdTokenError::Expired));
        let other_secret = sign_id_token(&claims(serde_json::json!({})), "another");
        assert_eq!(verify_id_token(&other_secret, &ch(), "n1", 1500), Err(IdTokenError::Signature));
        let iss = sign_id_token(&claims(serde_json::json!({"iss": "https://evil.example"})), "login-secret");
        assert_eq!(verify_id_token(&iss, &ch(), "n1", 1500), Err(IdTokenError::Issuer));
        let aud = sign_id_token(&claims(serde_json::json!({"aud": "999"})), "login-secret");
        assert_eq!(verify_id_token(&aud, &ch(), "n1", 1500), Err(IdTokenError::Audience));
        let none_alg = format!("{}.{}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#), good.split('.').nth(1).unwrap());
        assert_eq!(verify_id_token(&none_alg, &ch(), "n1", 1500), Err(IdTokenError::Algorithm));
        assert_eq!(verify_id_token("a.b", &ch(), "n1", 1500), Err(IdTokenError::Malformed));
        assert!(!format!("{:?}", ch()).contains("login-secret"));
    }
}
