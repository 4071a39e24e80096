//! The Messaging API client. Channel access tokens are issued from the channel's ID and secret
//! (stateless, 15 minutes; or short-lived v2, 30 days, never more than one live per channel so
//! the cap of 30 is never reached), cached per channel and renewed a minute before expiry, one
//! request when many tasks need a token at once. Every call waits for the channel's limiter for
//! its endpoint (NOTES §2.2), kept where the client's [`RateBudget`] keeps it: in this process
//! by default ([`LocalLimits`]), in the database when the app shares it between processes.
//! Push and multicast always carry the caller's `X-Line-Retry-Key`
//! (created and stored before the first attempt); they are retried only on 5xx, timeouts and
//! the rate-limit 429, with the same key, body and recipients, and never after the key's 24
//! hours; a 409 for an accepted duplicate is success.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use tsunagu_core::rate::{BoxFuture, BudgetError, Pacer, Rate, RateBudget, Window};

use crate::error::{LineError, classify};
use crate::message::{Message, validate_all_with};

/// LINE remembers a retry key for 24 hours (NOTES §2.1); we stop retrying an hour before.
pub const RETRY_KEY_LIFETIME_MS: i64 = 23 * 3_600_000;
/// Recipients per multicast.
pub const MULTICAST_MAX: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenKind {
    /// Stateless, 15 minutes (recommended; cannot be revoked).
    #[default]
    Stateless,
    /// Short-lived v2, 30 days (at most 30 per channel; issuing more revokes the oldest).
    ShortLived,
}

/// A Messaging API channel (the instructor's official account).
#[derive(Clone)]
pub struct Channel {
    pub id: String,
    pub secret: String,
    pub token_kind: TokenKind,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").field("id", &self.id).field("secret", &"[redacted]").finish_non_exhaustive()
    }
}

/// The endpoints with limits of their own (per channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Reply,
    Push,
    Multicast,
    /// Quota, consumption, profile, bot info, verify…
    Other,
    WebhookEndpoint,
    WebhookTest,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub reply: Rate,
    pub push: Rate,
    pub multicast: Rate,
    pub other: Rate,
    pub webhook_endpoint: Rate,
    pub webhook_test: Rate,
}

impl Default for Limits {
    /// LINE's documented figures (NOTES §2.2).
    fn default() -> Self {
        Limits {
            reply: Rate { max: 2000, window_ms: 1000 },
            push: Rate { max: 2000, window_ms: 1000 },
            multicast: Rate { max: 200, window_ms: 1000 },
            other: Rate { max: 2000, window_ms: 1000 },
            webhook_endpoint: Rate { max: 1000, window_ms: 60_000 },
            webhook_test: Rate { max: 60, window_ms: 3_600_000 },
        }
    }
}

impl Limits {
    fn of(&self, e: Endpoint) -> Rate {
        match e {
            Endpoint::Reply => self.reply,
            Endpoint::Push => self.push,
            Endpoint::Multicast => self.multicast,
            Endpoint::Other => self.other,
            Endpoint::WebhookEndpoint => self.webhook_endpoint,
            Endpoint::WebhookTest => self.webhook_test,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LineConfig {
    /// `https://api.line.me` (`line.api_base_url`).
    pub api_base_url: String,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub limits: Limits,
    /// Added to each window so that requests whose travel time varies still arrive in time.
    pub limit_margin_ms: u64,
    /// Send `http://` media URLs too (development and sandboxes: LINE itself refuses them).
    pub allow_http_media: bool,
}

impl LineConfig {
    pub fn new(api_base_url: &str) -> LineConfig {
        LineConfig {
            api_base_url: api_base_url.trim_end_matches('/').to_string(),
            timeout: Duration::from_secs(20),
            max_attempts: 6,
            backoff_base: Duration::from_millis(250),
            limits: Limits::default(),
            limit_margin_ms: 50,
            allow_http_media: false,
        }
    }
}

/// An `X-Line-Retry-Key`: created (and stored by the caller) before the first attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryKey {
    pub key: String,
    pub created_at_ms: i64,
}

impl RetryKey {
    /// A random UUID (v4), as LINE expects.
    pub fn new(now_ms: i64) -> RetryKey {
        let mut b = [0u8; 16];
        getrandom::getrandom(&mut b).expect("the OS provides randomness");
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        RetryKey {
            key: format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]),
            created_at_ms: now_ms,
        }
    }
}

/// How a push or multicast ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Message ids (push only; strings: they exceed 2^53).
    pub message_ids: Vec<String>,
    /// LINE had already accepted this retry key (409): sent earlier, not again.
    pub duplicate: bool,
    /// `x-line-request-id` of the accepted request.
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub value: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BotInfo {
    pub user_id: String,
    pub basic_id: String,
    #[serde(default)]
    pub premium_id: Option<String>,
    pub display_name: String,
    #[serde(default)]
    pub picture_url: Option<String>,
    pub chat_mode: String,
    pub mark_as_read_mode: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub user_id: String,
    pub display_name: String,
    #[serde(default)]
    pub picture_url: Option<String>,
    #[serde(default)]
    pub status_message: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WebhookEndpointInfo {
    pub endpoint: String,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookTestResult {
    pub success: bool,
    #[serde(default)]
    pub timestamp: String,
    #[serde(default)]
    pub status_code: i64,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenInfo {
    pub client_id: String,
    pub expires_in: i64,
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Clone)]
struct CachedToken {
    value: String,
    expires_at: Instant,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

#[derive(Deserialize)]
struct SentAnswer {
    #[serde(default, rename = "sentMessages")]
    sent_messages: Vec<SentMessage>,
}

#[derive(Deserialize)]
struct SentMessage {
    id: String,
}

type Slot = Arc<tokio::sync::Mutex<Option<CachedToken>>>;
pub type NowMs = Arc<dyn Fn() -> i64 + Send + Sync>;

pub struct LineClient {
    cfg: LineConfig,
    http: reqwest::Client,
    tokens: Mutex<HashMap<String, Slot>>,
    rate: Arc<dyn RateBudget>,
    now_ms: NowMs,
    token_requests: std::sync::atomic::AtomicU64,
}

/// Per-second limits kept in this process (the client's default): per key, admissions paced
/// evenly (GCRA, bursts of 1 % of the limit) and never over the limit in any window.
pub struct LocalLimits {
    epoch: Instant,
    limiters: Mutex<HashMap<String, (Pacer, Window)>>,
}

impl Default for LocalLimits {
    fn default() -> Self {
        LocalLimits { epoch: Instant::now(), limiters: Mutex::default() }
    }
}

impl LocalLimits {
    /// Admit now, or say how many microseconds to wait.
    fn try_acquire(&self, key: &str, rate: Rate) -> Result<(), u64> {
        let mut l = self.limiters.lock().unwrap_or_else(|p| p.into_inner());
        if !l.contains_key(key) {
            l.insert(key.to_string(), (Pacer::new(rate, (rate.max / 100).max(1)), Window::new(rate)));
        }
        let (pacer, window) = l.get_mut(key).expect("inserted above");
        let now_us = self.epoch.elapsed().as_micros() as u64;
        match pacer.wait_us(now_us) {
            0 => match window.try_acquire(now_us / 1000) {
                Ok(()) => {
                    pacer.commit(now_us);
                    Ok(())
                }
                Err(ms) => Err(ms * 1000),
            },
            us => Err(us),
        }
    }
}

impl RateBudget for LocalLimits {
    fn acquire<'a>(&'a self, key: &'a str, rate: Rate) -> BoxFuture<'a, Result<(), BudgetError>> {
        Box::pin(async move {
            loop {
                match self.try_acquire(key, rate) {
                    Ok(()) => return Ok(()),
                    Err(wait_us) => tokio::time::sleep(Duration::from_micros(wait_us.max(100))).await,
                }
            }
        })
    }
}

/// A reqwest client for LINE over TLS (rustls with ring) and for the sandbox over HTTP.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("a TLS provider is installed")
}

fn transport(e: &reqwest::Error) -> LineError {
    if e.is_timeout() { LineError::Timeout } else { LineError::Server { status: 0 } }
}

struct Answer {
    status: u16,
    body: String,
    request_id: Option<String>,
    accepted_request_id: Option<String>,
}

impl LineClient {
    pub fn new(cfg: LineConfig) -> LineClient {
        LineClient {
            http: http_client(cfg.timeout),
            cfg,
            tokens: Mutex::default(),
            rate: Arc::new(LocalLimits::default()),
            now_ms: Arc::new(|| jiff::Timestamp::now().as_millisecond()),
            token_requests: Default::default(),
        }
    }

    /// The wall clock used to judge retry keys' age (tests move it).
    pub fn with_clock(mut self, now_ms: NowMs) -> LineClient {
        self.now_ms = now_ms;
        self
    }

    /// Where the per-second limits are kept (default: in this process).
    pub fn with_rate_budget(mut self, rate: Arc<dyn RateBudget>) -> LineClient {
        self.rate = rate;
        self
    }

    pub fn config(&self) -> &LineConfig {
        &self.cfg
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn now_ms(&self) -> i64 {
        (self.now_ms)()
    }

    /// How many tokens this client has requested (diagnostics).
    pub fn token_requests(&self) -> u64 {
        self.token_requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    // ---- tokens -------------------------------------------------------------------------

    fn slot(&self, channel: &str) -> Slot {
        self.tokens.lock().expect("token slots").entry(channel.to_string()).or_default().clone()
    }

    /// A channel access token valid for at least another minute.
    pub async fn token(&self, ch: &Channel) -> Result<String, LineError> {
        let slot = self.slot(&ch.id);
        let mut held = slot.lock().await;
        if let Some(t) = held.as_ref().filter(|t| Instant::now() + Duration::from_secs(60) < t.expires_at) {
            return Ok(t.value.clone());
        }
        let t = self.issue(ch).await?;
        *held = Some(t.clone());
        Ok(t.value)
    }

    async fn invalidate(&self, ch: &Channel) {
        *self.slot(&ch.id).lock().await = None;
    }

    async fn issue(&self, ch: &Channel) -> Result<CachedToken, LineError> {
        self.token_requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = match ch.token_kind {
            TokenKind::Stateless => "/oauth2/v3/token",
            TokenKind::ShortLived => "/v2/oauth/accessToken",
        };
        let sent = Instant::now();
        let resp = self
            .http
            .post(format!("{}{path}", self.cfg.api_base_url))
            .form(&[("grant_type", "client_credentials"), ("client_id", &ch.id), ("client_secret", &ch.secret)])
            .send()
            .await
            .map_err(|e| transport(&e))?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(|e| transport(&e))?;
        if status != 200 {
            // The token endpoints answer a wrong ID or secret with 400 (OAuth shape).
            return Err(match classify(status, &body) {
                LineError::BadRequest { .. } | LineError::InvalidToken => LineError::BadChannelCredentials,
                e => e,
            });
        }
        let t: TokenAnswer = serde_json::from_str(&body)
            .map_err(|e| LineError::Other { status, message: format!("unreadable token answer: {e}") })?;
        Ok(CachedToken { value: t.access_token, expires_at: sent + Duration::from_secs(t.expires_in) })
    }

    /// `POST /v2/oauth/verify`: the channel a token belongs to and its remaining life.
    pub async fn verify_token(&self, access_token: &str) -> Result<TokenInfo, LineError> {
        let resp = self
            .http
            .post(format!("{}/v2/oauth/verify", self.cfg.api_base_url))
            .form(&[("access_token", access_token)])
            .send()
            .await
            .map_err(|e| transport(&e))?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(|e| transport(&e))?;
        if status != 200 {
            return Err(classify(status, &body));
        }
        serde_json::from_str(&body).map_err(|e| LineError::Other { status, message: e.to_string() })
    }

    // ---- limits and the one path every call takes ----------------------------------------

    async fn acquire(&self, channel: &str, e: Endpoint) -> Result<(), LineError> {
        let base = self.cfg.limits.of(e);
        let rate = Rate { max: base.max, window_ms: base.window_ms + self.cfg.limit_margin_ms };
        self.rate
            .acquire(&format!("line:{channel}:{e:?}"), rate)
            .await
            .map_err(|e| LineError::LimitsUnavailable { detail: e.0 })
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.cfg.backoff_base.as_millis() as u64;
        let exp = base.saturating_mul(1 << attempt.min(6)).min(30_000);
        let mut b = [0u8; 8];
        let _ = getrandom::getrandom(&mut b);
        Duration::from_millis(exp / 2 + u64::from_le_bytes(b) % (exp / 2 + 1))
    }

    async fn send_once(
        &self,
        ch: &Channel,
        method: &Method,
        path: &str,
        body: Option<&serde_json::Value>,
        retry_key: Option<&str>,
    ) -> Result<Answer, LineError> {
        let token = self.token(ch).await?;
        let mut rb = self.http.request(method.clone(), format!("{}{path}", self.cfg.api_base_url)).bearer_auth(token);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        if let Some(k) = retry_key {
            rb = rb.header("X-Line-Retry-Key", k);
        }
        let resp = rb.send().await.map_err(|e| transport(&e))?;
        let status = resp.status().as_u16();
        let header = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        let request_id = header("x-line-request-id");
        let accepted_request_id = header("x-line-accepted-request-id");
        let body = resp.text().await.map_err(|e| transport(&e))?;
        Ok(Answer { status, body, request_id, accepted_request_id })
    }

    /// Send with the retry rules. `retry_key` makes the call safe to repeat; without one (reply,
    /// reads are safe anyway) only reads are repeated.
    async fn execute(
        &self,
        ch: &Channel,
        endpoint: Endpoint,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        retry_key: Option<&RetryKey>,
    ) -> Result<Answer, LineError> {
        let repeatable = method == Method::GET || retry_key.is_some();
        let mut attempt = 0;
        let mut renewed = false;
        loop {
            attempt += 1;
            if let Some(k) = retry_key
                && self.now_ms() - k.created_at_ms > RETRY_KEY_LIFETIME_MS
            {
                return Err(LineError::RetryKeyExpired);
            }
            let result = match self.acquire(&ch.id, endpoint).await {
                Ok(()) => self.send_once(ch, &method, path, body.as_ref(), retry_key.map(|k| k.key.as_str())).await,
                Err(e) => Err(e),
            };
            let e = match result {
                Ok(a) if (200..300).contains(&a.status) => return Ok(a),
                // A duplicate of an accepted request: it was sent, do not send again.
                Ok(a) if a.status == 409 && retry_key.is_some() => return Ok(a),
                Ok(a) => classify(a.status, &a.body),
                Err(e) => e,
            };
            let pause = match &e {
                LineError::InvalidToken if !renewed => {
                    renewed = true;
                    self.invalidate(ch).await;
                    Some(Duration::ZERO)
                }
                // LINE gives no reset time: wait out a whole window, with jitter so that the
                // waiting requests do not return together.
                LineError::RateLimited if repeatable && attempt < self.cfg.max_attempts * 2 => {
                    Some(Duration::from_millis(1000) + self.backoff(attempt.min(3)))
                }
                // Nothing was sent: any call may wait and try again.
                LineError::LimitsUnavailable { .. } if attempt < self.cfg.max_attempts => Some(self.backoff(attempt)),
                e if e.retryable() && repeatable && attempt < self.cfg.max_attempts => Some(self.backoff(attempt)),
                _ => None,
            };
            match pause {
                Some(p) => tokio::time::sleep(p).await,
                None => return Err(e),
            }
        }
    }

    fn sent(a: Answer) -> Result<Sent, LineError> {
        if a.status == 409 {
            let ids = serde_json::from_str::<SentAnswer>(&a.body).map(|s| s.sent_messages).unwrap_or_default();
            return Ok(Sent {
                message_ids: ids.into_iter().map(|m| m.id).collect(),
                duplicate: true,
                request_id: a.accepted_request_id,
            });
        }
        let ids = serde_json::from_str::<SentAnswer>(&a.body).map(|s| s.sent_messages).unwrap_or_default();
        Ok(Sent { message_ids: ids.into_iter().map(|m| m.id).collect(), duplicate: false, request_id: a.request_id })
    }

    // ---- sending ----------------------------------------------------------------------------

    /// `POST /v2/bot/message/reply` (free of quota; no retry key: LINE refuses one here). A
    /// reply token is single-use, so a failed reply is not repeated: fall back to push.
    pub async fn reply(&self, ch: &Channel, reply_token: &str, messages: &[Message]) -> Result<Sent, LineError> {
        validate_all_with(messages, self.cfg.allow_http_media).map_err(LineError::Message)?;
        let body = serde_json::json!({"replyToken": reply_token, "messages": messages});
        let a = self.execute(ch, Endpoint::Reply, Method::POST, "/v2/bot/message/reply", Some(body), None).await?;
        Self::sent(a)
    }

    /// `POST /v2/bot/message/push` to one user.
    pub async fn push(&self, ch: &Channel, to: &str, messages: &[Message], key: &RetryKey) -> Result<Sent, LineError> {
        validate_all_with(messages, self.cfg.allow_http_media).map_err(LineError::Message)?;
        let body = serde_json::json!({"to": to, "messages": messages});
        let a = self.execute(ch, Endpoint::Push, Method::POST, "/v2/bot/message/push", Some(body), Some(key)).await?;
        Self::sent(a)
    }

    /// `POST /v2/bot/message/multicast` to 1–500 users.
    pub async fn multicast(
        &self,
        ch: &Channel,
        to: &[String],
        messages: &[Message],
        key: &RetryKey,
    ) -> Result<Sent, LineError> {
        validate_all_with(messages, self.cfg.allow_http_media).map_err(LineError::Message)?;
        if to.is_empty() || to.len() > MULTICAST_MAX {
            return Err(LineError::BadRequest {
                message: format!("multicast takes 1 to {MULTICAST_MAX} recipients, not {}", to.len()),
                details: vec![],
            });
        }
        let body = serde_json::json!({"to": to, "messages": messages});
        let a = self
            .execute(ch, Endpoint::Multicast, Method::POST, "/v2/bot/message/multicast", Some(body), Some(key))
            .await?;
        Self::sent(a)
    }

    // ---- reads and settings -----------------------------------------------------------------

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        ch: &Channel,
        endpoint: Endpoint,
        path: &str,
    ) -> Result<T, LineError> {
        let a = self.execute(ch, endpoint, Method::GET, path, None, None).await?;
        serde_json::from_str(&a.body).map_err(|e| LineError::Other { status: a.status, message: e.to_string() })
    }

    /// `GET /v2/bot/message/quota`: `none` (unlimited) or `limited` with the month's target.
    pub async fn quota(&self, ch: &Channel) -> Result<Quota, LineError> {
        self.get_json(ch, Endpoint::Other, "/v2/bot/message/quota").await
    }

    /// `GET /v2/bot/message/quota/consumption`: messages counted this month (approximate).
    pub async fn consumption(&self, ch: &Channel) -> Result<i64, LineError> {
        #[derive(Deserialize)]
        struct C {
            #[serde(rename = "totalUsage")]
            total_usage: i64,
        }
        Ok(self.get_json::<C>(ch, Endpoint::Other, "/v2/bot/message/quota/consumption").await?.total_usage)
    }

    pub async fn bot_info(&self, ch: &Channel) -> Result<BotInfo, LineError> {
        self.get_json(ch, Endpoint::Other, "/v2/bot/info").await
    }

    pub async fn profile(&self, ch: &Channel, user_id: &str) -> Result<Profile, LineError> {
        self.get_json(ch, Endpoint::Other, &format!("/v2/bot/profile/{user_id}")).await
    }

    /// `PUT /v2/bot/channel/webhook/endpoint`.
    pub async fn set_webhook_endpoint(&self, ch: &Channel, endpoint: &str) -> Result<(), LineError> {
        let body = serde_json::json!({"endpoint": endpoint});
        self.execute(ch, Endpoint::WebhookEndpoint, Method::PUT, "/v2/bot/channel/webhook/endpoint", Some(body), None)
            .await
            .map(|_| ())
    }

    /// `GET /v2/bot/channel/webhook/endpoint` (404 when none is set).
    pub async fn webhook_endpoint(&self, ch: &Channel) -> Result<WebhookEndpointInfo, LineError> {
        self.get_json(ch, Endpoint::WebhookEndpoint, "/v2/bot/channel/webhook/endpoint").await
    }

    /// `POST /v2/bot/channel/webhook/test` (60 per hour).
    pub async fn test_webhook_endpoint(
        &self,
        ch: &Channel,
        endpoint: Option<&str>,
    ) -> Result<WebhookTestResult, LineError> {
        let body = match endpoint {
            Some(e) => serde_json::json!({"endpoint": e}),
            None => serde_json::json!({}),
        };
        let a = self
            .execute(ch, Endpoint::WebhookTest, Method::POST, "/v2/bot/channel/webhook/test", Some(body), None)
            .await?;
        serde_json::from_str(&a.body).map_err(|e| LineError::Other { status: a.status, message: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_keys_are_uuid_v4() {
        let k = RetryKey::new(1);
        assert_eq!(k.key.len(), 36);
        let parts: Vec<&str> = k.key.split('-').collect();
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), vec![8, 4, 4, 4, 12]);
        assert!(parts[2].starts_with('4'));
        assert!(k.key.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        assert_ne!(RetryKey::new(1).key, k.key);
        assert!(
            !format!("{:?}", Channel { id: "1".into(), secret: "s3cr3t".into(), token_kind: TokenKind::Stateless })
                .contains("s3cr3t")
        );
    }
}
