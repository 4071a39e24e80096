//! The LINE sandbox: a stateful fake of the Messaging API, its token endpoints and LINE Login,
//! built from the official schemas (`../shared/specs/line/*.yml`) and `NOTES.md`, never from
//! our client.
//!
//! - Channel access tokens that expire (stateless 15 min; short-lived v2 with the 30-token
//!   cap, the oldest revoked), verify.
//! - Reply (tokens valid once and for a minute, no quota), push and multicast (≤ 500) with
//!   retry-key memory for 24 h (409 + `x-line-accepted-request-id`), the monthly quota counted
//!   per recipient, blocked and non-friend recipients answered 200 and sent nothing, per-channel
//!   rate limits with LINE's two different 429s, fault injection (500 before or after the work,
//!   answers held past the client's timeout).
//! - Quota, consumption, bot info, profiles, webhook endpoint set/get/test.
//! - Simulated users who follow and block (signed webhooks to the registered endpoint), a LINE
//!   Login consent screen with the add-friend option, and a chat page per user listing every
//!   message that user actually received.

mod api;
mod login;
mod page;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post, put};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A Messaging API channel (an official account) and, optionally, the LINE Login channel
/// linked to it.
#[derive(Debug, Clone)]
pub struct LineChannelSpec {
    pub channel_id: String,
    pub channel_secret: String,
    /// The bot's user id (the webhook `destination`).
    pub bot_user_id: String,
    pub basic_id: String,
    pub display_name: String,
    /// Monthly message limit; `None` = unlimited (`type: none`).
    pub monthly_quota: Option<i64>,
    pub login: Option<LoginChannelSpec>,
}

#[derive(Debug, Clone)]
pub struct LoginChannelSpec {
    pub channel_id: String,
    pub channel_secret: String,
    /// The callback URLs registered in LINE Developers (a request's must be one of them).
    pub redirect_uris: Vec<String>,
}

/// A simulated LINE user.
#[derive(Debug, Clone)]
pub struct SimUser {
    pub user_id: String,
    pub display_name: String,
}

/// Fault rates (0.0–1.0) for the message endpoints.
#[derive(Debug, Clone, Default)]
pub struct LineFaults {
    pub rate_500: f64,
    pub rate_timeout: f64,
    pub timeout_hold: Duration,
    pub seed: u64,
}

/// A message a user received.
#[derive(Debug, Clone)]
pub struct Received {
    pub channel_id: String,
    pub user_id: String,
    pub message: serde_json::Value,
    /// `reply`, `push` or `multicast`.
    pub via: &'static str,
    pub request_id: String,
    pub at_ms: i64,
}

/// One request and its answer, as recorded.
#[derive(Debug, Clone)]
pub struct LineExchange {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub request_body: String,
    pub response_body: String,
}

#[derive(Debug, Clone, Default)]
pub struct LineStats {
    pub requests: u64,
    /// Real rate-limit answers (not injected).
    pub rate_429: u64,
    pub monthly_429: u64,
    pub duplicates_409: u64,
    pub injected_500_before: u64,
    pub injected_500_after: u64,
    pub injected_timeouts: u64,
    /// Most requests admitted in any sliding 1000 ms, per (channel, endpoint).
    pub max_in_any_second: HashMap<(String, String), u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Friendship {
    Friend,
    Blocked,
}

pub(crate) struct ChannelState {
    pub spec: LineChannelSpec,
    pub webhook: Option<String>,
    pub webhook_active: bool,
    pub friends: HashMap<String, Friendship>,
    pub usage: i64,
    pub retry_keys: HashMap<String, (String, Instant, Vec<String>)>,
    pub short_lived: VecDeque<String>,
    pub windows: HashMap<&'static str, VecDeque<Instant>>,
    pub reply_tokens: HashMap<String, (String, Instant)>,
    /// Endpoints (`push`, `multicast`) this channel's plan does not allow: 403.
    pub forbidden: std::collections::HashSet<&'static str>,
    /// The bot's profile picture (`pictureUrl` of `GET /v2/bot/info`), when it has one.
    pub picture_url: Option<String>,
}

pub(crate) struct Inner {
    pub channels: HashMap<String, ChannelState>,
    pub users: Vec<SimUser>,
    pub tokens: HashMap<String, (String, Instant)>,
    pub login_codes: HashMap<String, login::Code>,
    pub login_tokens: HashMap<String, (String, String)>,
    pub received: Vec<Received>,
    pub faults: LineFaults,
    pub fault_rng: u64,
    pub rng: u64,
    pub stats: LineStats,
    pub exchanges: VecDeque<LineExchange>,
    pub recording: bool,
    pub limits: HashMap<&'static str, u32>,
    pub stateless_ttl: Duration,
    pub token_requests: u64,
    /// What the last button on the page did (shown at the top of the page).
    pub notice: Option<String>,
    /// Added to the wall clock when a delivery is recorded: a test that moves the app's clock
    /// moves this one with it, so the chat view shows the simulated times.
    pub clock_offset_ms: i64,
}

impl Default for Inner {
    fn default() -> Self {
        let limits = HashMap::from([("reply", 2000), ("push", 2000), ("multicast", 200), ("other", 2000)]);
        Inner {
            channels: HashMap::new(),
            users: Vec::new(),
            tokens: HashMap::new(),
            login_codes: HashMap::new(),
            login_tokens: HashMap::new(),
            received: Vec::new(),
            faults: LineFaults::default(),
            fault_rng: 1,
            rng: 0x5DEE_CE66_D1CE_4E5B ^ u64::from(std::process::id()),
            stats: LineStats::default(),
            exchanges: VecDeque::new(),
            clock_offset_ms: 0,
            recording: true,
            limits,
            stateless_ttl: Duration::from_secs(900),
            token_requests: 0,
            notice: None,
        }
    }
}

impl Inner {
    pub fn next(&mut self) -> u64 {
        crate::common::splitmix(&mut self.rng)
    }

    pub fn token(&mut self, len: usize) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..len).map(|_| A[(self.next() % A.len() as u64) as usize] as char).collect()
    }

    pub fn hex(&mut self, len: usize) -> String {
        (0..len).map(|_| char::from_digit((self.next() % 16) as u32, 16).expect("a hex digit")).collect()
    }

    pub fn fault_draw(&mut self) -> f64 {
        crate::common::fault_draw(&mut self.fault_rng)
    }

    pub fn record(&mut self, ex: LineExchange) {
        crate::common::record(&mut self.exchanges, self.recording, ex);
    }

    pub fn user(&self, user_id: &str) -> Option<&SimUser> {
        self.users.iter().find(|u| u.user_id == user_id)
    }

    pub fn login_channel(&self, login_id: &str) -> Option<(String, LoginChannelSpec)> {
        self.channels.values().find_map(|c| {
            c.spec.login.as_ref().filter(|l| l.channel_id == login_id).map(|l| (c.spec.channel_id.clone(), l.clone()))
        })
    }
}

/// `base64(HMAC-SHA256(secret, body))`, as LINE signs webhooks.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Shared handle.
#[derive(Clone, Default)]
pub struct LineSandbox {
    pub(crate) inner: Arc<Mutex<Inner>>,
    pub(crate) http: Arc<std::sync::OnceLock<reqwest::Client>>,
}

impl LineSandbox {
    pub fn new() -> LineSandbox {
        LineSandbox::default()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("a TLS provider is installed")
        })
    }

    pub fn add_channel(&self, spec: LineChannelSpec) {
        let state = ChannelState {
            spec: spec.clone(),
            webhook: None,
            webhook_active: true,
            friends: HashMap::new(),
            usage: 0,
            retry_keys: HashMap::new(),
            short_lived: VecDeque::new(),
            windows: HashMap::new(),
            reply_tokens: HashMap::new(),
            forbidden: Default::default(),
            picture_url: None,
        };
        self.lock().channels.insert(spec.channel_id.clone(), state);
    }

    /// Move the clock that delivery records (and the chat view) read, with the app's.
    pub fn advance_clock(&self, ms: i64) {
        self.lock().clock_offset_ms += ms;
    }

    /// The official account's monthly message limit, as a plan change at LINE sets it.
    pub fn set_monthly_quota(&self, channel_id: &str, quota: Option<i64>) {
        if let Some(c) = self.lock().channels.get_mut(channel_id) {
            c.spec.monthly_quota = quota;
        }
    }

    /// The LINE Developers console's 「Webhook の利用」 switch (on for a new channel here).
    /// Give the bot a profile picture (LINE answers its URL, on its own CDN, in the bot's info).
    pub fn set_bot_picture(&self, channel_id: &str, url: &str) {
        if let Some(c) = self.lock().channels.get_mut(channel_id) {
            c.picture_url = Some(url.to_string());
        }
    }

    pub fn set_webhook_active(&self, channel_id: &str, on: bool) {
        if let Some(c) = self.lock().channels.get_mut(channel_id) {
            c.webhook_active = on;
        }
    }

    pub fn add_user(&self, user: SimUser) {
        self.lock().users.push(user);
    }

    /// A new user id in LINE's format (`U` + 32 hex digits).
    pub fn new_user_id(&self) -> String {
        format!("U{}", self.lock().hex(32))
    }

    /// Make `user_id` a friend without a webhook (setting up a test's starting state).
    pub fn set_friend(&self, channel_id: &str, user_id: &str) {
        if let Some(c) = self.lock().channels.get_mut(channel_id) {
            c.friends.insert(user_id.to_string(), Friendship::Friend);
        }
    }

    /// Per-second limits: `reply`, `push`, `multicast`, `other`.
    pub fn set_limit(&self, endpoint: &'static str, per_second: u32) {
        self.lock().limits.insert(endpoint, per_second);
    }

    /// Make `endpoint` (`push` or `multicast`) answer 403 for the channel, as LINE does for an
    /// API the account is not entitled to.
    pub fn forbid(&self, channel_id: &str, endpoint: &'static str) {
        if let Some(c) = self.lock().channels.get_mut(channel_id) {
            c.forbidden.insert(endpoint);
        }
    }

    pub fn set_stateless_ttl(&self, ttl: Duration) {
        self.lock().stateless_ttl = ttl;
    }

    pub fn revoke_tokens(&self) {
        self.lock().tokens.clear();
    }

    pub fn token_requests(&self) -> u64 {
        self.lock().token_requests
    }

    pub fn set_faults(&self, faults: LineFaults) {
        let mut g = self.lock();
        g.fault_rng = crate::common::fault_seed(faults.seed);
        g.faults = faults;
    }

    pub fn set_recording(&self, on: bool) {
        self.lock().recording = on;
    }

    pub fn exchanges(&self) -> Vec<LineExchange> {
        self.lock().exchanges.iter().cloned().collect()
    }

    pub fn stats(&self) -> LineStats {
        self.lock().stats.clone()
    }

    /// Messages a user received, in order.
    pub fn received_by(&self, user_id: &str) -> Vec<Received> {
        self.lock().received.iter().filter(|r| r.user_id == user_id).cloned().collect()
    }

    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// Messages counted against the channel's monthly quota.
    pub fn usage(&self, channel_id: &str) -> i64 {
        self.lock().channels.get(channel_id).map(|c| c.usage).unwrap_or(0)
    }

    pub fn webhook_endpoint(&self, channel_id: &str) -> Option<String> {
        self.lock().channels.get(channel_id).and_then(|c| c.webhook.clone())
    }

    /// Issue a reply token for `user_id` as a webhook would carry it.
    pub fn reply_token_for(&self, channel_id: &str, user_id: &str) -> String {
        let mut g = self.lock();
        let t = g.hex(32);
        if let Some(c) = g.channels.get_mut(channel_id) {
            c.reply_tokens.insert(t.clone(), (user_id.to_string(), Instant::now()));
        }
        t
    }

    /// The user adds the official account as a friend (or unblocks it): LINE sends a signed
    /// `follow` webhook to the registered endpoint. Returns the endpoint's HTTP status.
    pub async fn follow(&self, channel_id: &str, user_id: &str) -> Result<u16, String> {
        let event = {
            let mut g = self.lock();
            let reply = g.hex(32);
            let event_id = g.token(26).to_uppercase();
            let c = g.channels.get_mut(channel_id).ok_or("unknown channel")?;
            let unblocked = c.friends.get(user_id) == Some(&Friendship::Blocked);
            c.friends.insert(user_id.to_string(), Friendship::Friend);
            c.reply_tokens.insert(reply.clone(), (user_id.to_string(), Instant::now()));
            serde_json::json!({
                "type": "follow", "mode": "active", "timestamp": jiff::Timestamp::now().as_millisecond(),
                "source": {"type": "user", "userId": user_id}, "webhookEventId": event_id,
                "deliveryContext": {"isRedelivery": false}, "replyToken": reply,
                "follow": {"isUnblocked": unblocked}
            })
        };
        self.deliver(channel_id, vec![event]).await
    }

    /// The user blocks the official account: an `unfollow` webhook.
    pub async fn block(&self, channel_id: &str, user_id: &str) -> Result<u16, String> {
        let event = {
            let mut g = self.lock();
            let event_id = g.token(26).to_uppercase();
            let c = g.channels.get_mut(channel_id).ok_or("unknown channel")?;
            c.friends.insert(user_id.to_string(), Friendship::Blocked);
            serde_json::json!({
                "type": "unfollow", "mode": "active", "timestamp": jiff::Timestamp::now().as_millisecond(),
                "source": {"type": "user", "userId": user_id}, "webhookEventId": event_id,
                "deliveryContext": {"isRedelivery": false}
            })
        };
        self.deliver(channel_id, vec![event]).await
    }

    /// POST a signed webhook with `events` to the channel's endpoint.
    pub async fn deliver(&self, channel_id: &str, events: Vec<serde_json::Value>) -> Result<u16, String> {
        let (endpoint, secret, destination) = {
            let g = self.lock();
            let c = g.channels.get(channel_id).ok_or("unknown channel")?;
            let Some(endpoint) = c.webhook.clone().filter(|_| c.webhook_active) else {
                return Err("no webhook endpoint set".into());
            };
            (endpoint, c.spec.channel_secret.clone(), c.spec.bot_user_id.clone())
        };
        let body = serde_json::json!({"destination": destination, "events": events}).to_string();
        self.post_signed(&endpoint, &secret, body).await
    }

    /// POST an exact body, signed (tests of redelivery and malformed JSON use this).
    pub async fn post_signed(&self, endpoint: &str, secret: &str, body: String) -> Result<u16, String> {
        let signature = sign(secret, body.as_bytes());
        let sent = self
            .http()
            .post(endpoint)
            .header("content-type", "application/json; charset=utf-8")
            .header("x-line-signature", signature)
            .body(body.clone())
            .send()
            .await;
        // Recorded as webhook.yml's operation, `POST /callback`, with the bot server's status.
        let status = sent.as_ref().map(|r| r.status().as_u16()).unwrap_or(0);
        self.lock().record(LineExchange {
            method: "POST".into(),
            path: "/callback".into(),
            status,
            request_body: body,
            response_body: String::new(),
        });
        Ok(sent.map_err(|e| e.to_string())?.status().as_u16())
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/oauth2/v3/token", post(api::issue_stateless))
            .route("/v2/oauth/accessToken", post(api::issue_short_lived))
            .route("/v2/oauth/verify", post(api::verify))
            .route("/v2/bot/message/reply", post(api::reply))
            .route("/v2/bot/message/push", post(api::push))
            .route("/v2/bot/message/multicast", post(api::multicast))
            .route("/v2/bot/message/quota", get(api::quota))
            .route("/v2/bot/message/quota/consumption", get(api::consumption))
            .route("/v2/bot/info", get(api::bot_info))
            .route("/v2/bot/profile/{user_id}", get(api::profile))
            .route("/v2/bot/channel/webhook/endpoint", put(api::set_webhook).get(api::get_webhook))
            .route("/v2/bot/channel/webhook/test", post(api::test_webhook))
            .route("/oauth2/v2.1/authorize", get(login::consent_page).post(login::consent_submit))
            .route("/oauth2/v2.1/token", post(login::token))
            .route("/v2/profile", get(login::profile))
            .route("/friendship/v1/status", get(login::friendship))
            .route("/", get(page::index))
            .route("/chat/{user_id}", get(page::chat))
            .route("/users/{user_id}/follow", post(page::follow))
            .route("/users/{user_id}/block", post(page::block))
            .with_state(self.clone())
    }
}
