//! The Zoom sandbox: a stateful fake of the parts of Zoom Tsunagu uses, built from the official
//! schema (`../shared/specs/zoom/*.openapi.json`) and `NOTES.md`, never from our client.
//!
//! - OAuth (`/oauth/token`, `/oauth/authorize`): Server-to-Server tokens (`account_credentials`)
//!   and OAuth apps (authorization code, refresh tokens that rotate); tokens expire.
//! - REST under `/v2` ([`api`]): users, meetings, webinars, registrants, registration
//!   questions, with scopes enforced per endpoint, Zoom's business rules (3027, registration
//!   off, capacity, denied emails, duplicates answered with the existing registrant), PATCH and
//!   DELETE answering 204, passcodes and `pwd=` in join URLs, one join URL per registrant.
//! - Limits (NOTES §7): per-second limits per account and label by sliding window with Zoom's
//!   headers, Free-plan daily caps, 100 creates+updates per host per day, 3 adds per email per
//!   day, 10 status changes per registrant per day.
//! - Fault injection per test ([`Faults`]): 429s, 500s before or after the work is done, and
//!   answers held past the client's timeout after the work is done.
//! - For tests: a traffic log ([`Exchange`]), [`SandboxStats`], views of the state; for the
//!   demo: an HTML page at `/` and pages behind the join URLs.

mod api;
mod oauth;
pub(crate) mod page;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{any, get, post};

pub use api::Plan;

/// A Server-to-Server OAuth app registered in the sandbox.
#[derive(Debug, Clone)]
pub struct S2sApp {
    pub account_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub scopes: Vec<String>,
}

/// A Marketplace OAuth app (authorization code flow).
#[derive(Debug, Clone)]
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
}

/// A Zoom user. The first user added to an account is its owner.
#[derive(Debug, Clone)]
pub struct SandboxUser {
    pub account_id: String,
    pub id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// Licensed (type 2) or basic (type 1); registration needs a licensed host.
    pub licensed: bool,
    pub webinar_license: bool,
}

/// Fault rates (0.0–1.0) for `/v2` requests.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub rate_429: f64,
    pub rate_500: f64,
    pub rate_timeout: f64,
    /// How long a "timed out" answer is held (longer than the client's timeout).
    pub timeout_hold: Duration,
    pub seed: u64,
}

/// One request and its answer, as recorded.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    /// Without the query, with the `/v2` prefix.
    pub path: String,
    pub query: String,
    pub status: u16,
    pub request_body: String,
    pub response_body: String,
    pub response_headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default)]
pub struct SandboxStats {
    pub requests: u64,
    /// Real per-second limit hits (not injected).
    pub qps_429: u64,
    /// Real daily limit hits (account label caps, host creates/updates, registrant adds).
    pub daily_429: u64,
    pub injected_429: u64,
    pub injected_500_before: u64,
    pub injected_500_after: u64,
    pub injected_timeouts: u64,
    /// Highest number of admitted requests in any sliding 1000 ms, per (account, label).
    pub max_in_any_second: HashMap<(String, String), u32>,
}

/// A registrant as the sandbox holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrantView {
    pub id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub status: String,
    pub join_url: String,
}

/// A meeting or webinar as the sandbox holds it.
#[derive(Debug, Clone)]
pub struct EventView {
    pub id: i64,
    pub webinar: bool,
    pub account_id: String,
    pub topic: String,
    pub start_time: String,
    pub timezone: String,
    pub approval_type: i64,
    pub registrants: usize,
    pub duration: i64,
    /// The settings as Zoom would answer them on GET.
    pub settings: serde_json::Value,
}

#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub account_id: String,
    /// The authorizing user for OAuth-app tokens; `None` for S2S.
    pub user_id: Option<String>,
    pub scopes: Vec<String>,
    pub expires: Instant,
}

pub(crate) struct Inner {
    pub apps: Vec<S2sApp>,
    pub oauth_apps: Vec<OAuthApp>,
    pub tokens: HashMap<String, Issued>,
    pub codes: HashMap<String, oauth::Code>,
    pub refresh: HashMap<String, oauth::RefreshGrant>,
    pub token_requests: u64,
    pub ttl: Option<Duration>,
    /// How long `/oauth/token` takes to answer.
    pub token_latency: Duration,
    pub rng: u64,
    pub fault_rng: u64,
    pub faults: Faults,
    pub users: Vec<SandboxUser>,
    pub api: api::State,
    pub stats: SandboxStats,
    pub exchanges: VecDeque<Exchange>,
    pub recording: bool,
    pub join_base: String,
    /// Webhook subscriptions: Zoom account id → (endpoint URL, secret token).
    pub webhooks: HashMap<String, (String, String)>,
    /// Every `/v2` request answers 503 (an outage).
    pub down: bool,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            apps: Vec::new(),
            oauth_apps: Vec::new(),
            tokens: HashMap::new(),
            codes: HashMap::new(),
            refresh: HashMap::new(),
            token_requests: 0,
            ttl: None,
            token_latency: Duration::ZERO,
            rng: 0x2545_F491_4F6C_DD1D ^ u64::from(std::process::id()),
            fault_rng: 1,
            faults: Faults::default(),
            users: Vec::new(),
            api: api::State::default(),
            stats: SandboxStats::default(),
            exchanges: VecDeque::new(),
            recording: true,
            join_base: "https://zoom.us".into(),
            webhooks: HashMap::new(),
            down: false,
        }
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Zoom's webhook envelope and signature (NOTES §8).
mod webhook {
    use hmac::{Hmac, Mac};
    use serde_json::{Value, json};
    use sha2::Sha256;

    pub fn hmac_hex(secret: &str, message: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(message);
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn signature(secret: &str, ts: &str, body: &[u8]) -> String {
        let mut m = format!("v0:{ts}:").into_bytes();
        m.extend_from_slice(body);
        format!("v0={}", hmac_hex(secret, &m))
    }

    fn object(e: &super::api::Event) -> Value {
        json!({
            "id": e.id, "uuid": e.uuid, "host_id": e.host_id, "topic": e.topic, "type": e.kind,
            "start_time": e.start.map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default(),
            "duration": e.duration, "timezone": e.timezone,
        })
    }

    pub fn envelope(event: &str, e: &super::api::Event, old: Option<&super::api::Event>) -> Value {
        let mut payload = json!({
            "account_id": e.account_id, "operator": e.host_email, "operator_id": e.host_id, "object": object(e),
        });
        if let Some(old) = old {
            payload["old_object"] = object(old);
        }
        json!({"event": event, "event_ts": super::now_ms(), "payload": payload})
    }
}

/// The most exchanges kept (oldest dropped first).
impl Inner {
    /// splitmix64: ids, passcodes, tokens.
    pub fn next(&mut self) -> u64 {
        crate::common::splitmix(&mut self.rng)
    }

    /// A random URL-safe string of `len` characters.
    pub fn token(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        (0..len).map(|_| ALPHABET[(self.next() % 64) as usize] as char).collect()
    }

    /// A uniform draw in [0, 1) from the fault stream (seeded per test).
    pub fn fault_draw(&mut self) -> f64 {
        crate::common::fault_draw(&mut self.fault_rng)
    }

    pub fn record(&mut self, ex: Exchange) {
        crate::common::record(&mut self.exchanges, self.recording, ex);
    }

    pub fn user(&self, account_id: &str, id_or_email: &str) -> Option<&SandboxUser> {
        self.users
            .iter()
            .find(|u| u.account_id == account_id && (u.id == id_or_email || u.email.eq_ignore_ascii_case(id_or_email)))
    }

    pub fn owner(&self, account_id: &str) -> Option<&SandboxUser> {
        self.users.iter().find(|u| u.account_id == account_id)
    }
}

/// Shared handle: tests configure it and read what happened.
#[derive(Clone, Default)]
pub struct ZoomSandbox {
    pub(crate) inner: Arc<Mutex<Inner>>,
}

impl ZoomSandbox {
    pub fn new() -> ZoomSandbox {
        ZoomSandbox::default()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add_app(&self, app: S2sApp) {
        self.lock().apps.push(app);
    }

    pub fn add_oauth_app(&self, app: OAuthApp) {
        self.lock().oauth_apps.push(app);
    }

    pub fn add_user(&self, user: SandboxUser) {
        self.lock().users.push(user);
    }

    /// How long the token endpoint takes before it handles a request (Zoom's is not instant):
    /// lets tests have two instances' renewals overlap.
    pub fn set_token_latency(&self, latency: Duration) {
        self.lock().token_latency = latency;
    }

    /// Token lifetime (Zoom: one hour).
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.lock().ttl = Some(ttl);
    }

    /// Change an app's scopes (S2S or OAuth); like Zoom, only tokens minted afterwards carry them.
    pub fn set_scopes(&self, client_id: &str, scopes: Vec<String>) {
        let mut g = self.lock();
        if let Some(app) = g.apps.iter_mut().find(|a| a.client_id == client_id) {
            app.scopes = scopes.clone();
        }
        if let Some(app) = g.oauth_apps.iter_mut().find(|a| a.client_id == client_id) {
            app.scopes = scopes;
        }
    }

    /// Invalidate every access token (as when an app is reactivated): the next call gets 124.
    pub fn revoke_tokens(&self) {
        self.lock().tokens.clear();
    }

    pub fn token_requests(&self) -> u64 {
        self.lock().token_requests
    }

    /// The account and scopes of a live token, or `None` when it is unknown or expired.
    pub fn token_scopes(&self, access_token: &str) -> Option<(String, Vec<String>)> {
        let g = self.lock();
        g.tokens
            .get(access_token)
            .filter(|t| t.expires > Instant::now())
            .map(|t| (t.account_id.clone(), t.scopes.clone()))
    }

    /// Skip the consent page: the code Zoom would hand back after `email` approved `client_id`.
    pub fn authorize_code(&self, client_id: &str, email: &str) -> String {
        let mut g = self.lock();
        oauth::issue_code(&mut g, client_id, email).expect("known OAuth app and user")
    }

    pub fn set_plan(&self, account_id: &str, plan: Plan) {
        self.lock().api.account_mut(account_id).plan = plan;
    }

    /// The account setting "Require a passcode when scheduling new meetings", locked by the
    /// admin: a passcode is generated even when the request says `default_password: false`.
    pub fn set_require_passcode(&self, account_id: &str, on: bool) {
        self.lock().api.account_mut(account_id).require_passcode = on;
    }

    /// The account setting "Embed passcode in invite link for one-click join".
    pub fn set_embed_passcode(&self, account_id: &str, on: bool) {
        self.lock().api.account_mut(account_id).embed_passcode = on;
    }

    /// Host used in join, start and registration URLs (default `https://zoom.us`).
    pub fn set_join_base(&self, base: &str) {
        self.lock().join_base = base.trim_end_matches('/').to_string();
    }

    pub fn set_faults(&self, faults: Faults) {
        let mut g = self.lock();
        g.fault_rng = crate::common::fault_seed(faults.seed);
        g.faults = faults;
    }

    pub fn set_recording(&self, on: bool) {
        self.lock().recording = on;
    }

    pub fn exchanges(&self) -> Vec<Exchange> {
        self.lock().exchanges.iter().cloned().collect()
    }

    pub fn clear_exchanges(&self) {
        self.lock().exchanges.clear();
    }

    pub fn stats(&self) -> SandboxStats {
        self.lock().stats.clone()
    }

    /// Midnight UTC: every daily counter starts again.
    pub fn reset_daily(&self) {
        self.lock().api.reset_daily();
    }

    /// Registrants of a meeting or webinar (all statuses), in the order they registered.
    pub fn registrants(&self, event_id: i64) -> Vec<RegistrantView> {
        self.lock().api.registrant_views(event_id)
    }

    pub fn events(&self) -> Vec<EventView> {
        self.lock().api.event_views()
    }

    /// Registrant adds counted today for an email (every POST that reached the rules).
    pub fn add_calls_for(&self, email: &str) -> u32 {
        self.lock().api.add_calls_for(email)
    }

    /// The organizer deleted the meeting or webinar in Zoom's own screens.
    pub fn delete_on_zoom_side(&self, event_id: i64) {
        self.lock().api.events.remove(&event_id);
    }

    /// An outage: while down, every API request answers 503 without being processed.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// An event subscription of an account's app (NOTES §8): Zoom posts `meeting.*` and
    /// `webinar.*` events to `url`, signed with `secret`.
    pub fn set_webhook(&self, account_id: &str, url: &str, secret: &str) {
        self.lock().webhooks.insert(account_id.to_string(), (url.to_string(), secret.to_string()));
    }

    /// Zoom's URL validation of the subscription's endpoint: whether it answered the challenge
    /// correctly.
    pub async fn validate_webhook(&self, account_id: &str) -> bool {
        let plain = self.lock().token(22);
        let body = serde_json::json!({"event": "endpoint.url_validation", "payload": {"plainToken": plain}, "event_ts": now_ms()});
        let Some((status, answer)) = self.deliver(account_id, &body).await else { return false };
        let secret = self.lock().webhooks.get(account_id).map(|w| w.1.clone()).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
        status == 200
            && v["plainToken"] == plain.as_str()
            && v["encryptedToken"] == webhook::hmac_hex(&secret, plain.as_bytes())
    }

    /// The organizer deletes the meeting or webinar in Zoom's own screens, and Zoom posts
    /// `meeting.deleted` / `webinar.deleted`. Returns the endpoint's HTTP status (`None`: no
    /// subscription, or the event does not exist).
    pub async fn delete_in_zoom(&self, event_id: i64) -> Option<u16> {
        let (account, body) = {
            let mut g = self.lock();
            let e = g.api.events.remove(&event_id)?;
            let kind = if e.webinar { "webinar" } else { "meeting" };
            (e.account_id.clone(), webhook::envelope(&format!("{kind}.deleted"), &e, None))
        };
        self.deliver(&account, &body).await.map(|(s, _)| s)
    }

    /// The organizer moves the meeting or webinar in Zoom's own screens (`start_time` in UTC,
    /// `…Z`), and Zoom posts `meeting.updated` / `webinar.updated` with the old values.
    pub async fn reschedule_in_zoom(&self, event_id: i64, start_time: &str) -> Option<u16> {
        let start: jiff::Timestamp = start_time.parse().ok()?;
        let (account, body) = {
            let mut g = self.lock();
            let e = g.api.events.get_mut(&event_id)?;
            let old = e.clone();
            e.start = Some(start);
            let kind = if e.webinar { "webinar" } else { "meeting" };
            (e.account_id.clone(), webhook::envelope(&format!("{kind}.updated"), e, Some(&old)))
        };
        self.deliver(&account, &body).await.map(|(s, _)| s)
    }

    /// POST a signed event to the account's subscription, as Zoom does.
    async fn deliver(&self, account_id: &str, body: &serde_json::Value) -> Option<(u16, String)> {
        let (url, secret) = self.lock().webhooks.get(account_id).cloned()?;
        let raw = body.to_string();
        let ts = (now_ms() / 1000).to_string();
        let sig = webhook::signature(&secret, &ts, raw.as_bytes());
        let _ = rustls::crypto::ring::default_provider().install_default();
        let resp = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .header("x-zm-request-timestamp", ts)
            .header("x-zm-signature", sig)
            .body(raw)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.text().await.unwrap_or_default()))
    }

    /// Registrant capacity of an event (meetings: 4,999 by default).
    pub fn set_capacity(&self, event_id: i64, max: u32) {
        if let Some(e) = self.lock().api.events.get_mut(&event_id) {
            e.capacity = max;
        }
    }

    /// Required custom questions set by the organizer in Zoom.
    pub fn set_required_questions(&self, event_id: i64, titles: Vec<String>) {
        if let Some(e) = self.lock().api.events.get_mut(&event_id) {
            e.required_questions = titles;
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/oauth/token", post(oauth::token))
            .route("/oauth/authorize", get(oauth::consent_page).post(oauth::consent_submit))
            .route("/v2/{*rest}", any(api::handle))
            .route("/", get(page::index))
            .route("/sandbox", get(page::index))
            .route("/j/{id}", get(page::joined))
            .route("/w/{id}", get(page::joined))
            .route("/s/{id}", get(page::joined))
            .with_state(self.clone())
    }
}
