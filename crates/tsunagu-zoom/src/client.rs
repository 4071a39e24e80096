//! The Zoom REST client. Every call goes through one path ([`ZoomClient::execute`]) that:
//! waits for the organizer's per-label rate limiter (NOTES §7: limits are per Zoom account,
//! shared by every app on it), counts the 100 creates+updates per host per day (both kept where
//! the client's [`RateBudget`] and [`DailyCounter`] keep them: in this process by default, in
//! the database when the app shares them between processes), obtains a token
//! (S2S or OAuth app, cached), sends, and decides what an error allows: a per-second 429 waits
//! for the reset and retries, an expired token is renewed once, 5xx and timeouts are retried
//! with backoff only for calls that are safe to repeat. Adding a registrant is never repeated
//! blindly: after an answer that leaves it unknown whether Zoom registered the person, the
//! client looks the email up among the existing registrants first, and it counts the 3 adds
//! per email per UTC day.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::{S2sCredentials, TokenCache, header_pairs, http_client, transport_error};
use crate::error::{Retry, ZoomError, classify};
use crate::limits::{Call, DailyCounter, Label, LocalDaily, LocalLimits, Rate, RateBudget, ZoomPlan};
use crate::model::*;
use crate::oauth::{OAuthApp, OAuthTokens, TokenStore};

/// Zoom's per-host daily allowance of meeting/webinar creates and updates.
pub const HOST_DAILY_CREATES_UPDATES: u32 = 100;
/// Zoom's per-email daily allowance of registrant adds.
pub const REGISTRANT_DAILY_ADDS: u32 = 3;
const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `https://api.zoom.us/v2` in production (`zoom.api_base_url`).
    pub api_base_url: String,
    /// `https://zoom.us` in production (`zoom.oauth_base_url`).
    pub oauth_base_url: String,
    /// Per request.
    pub timeout: Duration,
    /// Attempts per call for retries on 5xx/timeouts of safe calls and on per-second 429s.
    pub max_attempts: u32,
    /// First backoff pause; doubled per attempt, with jitter.
    pub backoff_base: Duration,
    /// Added to each per-second window, so that requests whose travel time varies still arrive
    /// within Zoom's limit.
    pub limit_margin_ms: u64,
}

impl ClientConfig {
    pub fn new(api_base_url: &str, oauth_base_url: &str) -> ClientConfig {
        ClientConfig {
            api_base_url: api_base_url.trim_end_matches('/').to_string(),
            oauth_base_url: oauth_base_url.trim_end_matches('/').to_string(),
            timeout: Duration::from_secs(30),
            max_attempts: 8,
            backoff_base: Duration::from_millis(250),
            limit_margin_ms: 50,
        }
    }
}

/// How an organizer's calls are authorized.
#[derive(Debug, Clone)]
pub enum Auth {
    /// The manual's 基本設定: a Server-to-Server OAuth app of the organizer's own.
    S2s(S2sCredentials),
    /// Tsunagu's OAuth app, authorized by the organizer; `tokens` as read from the store with
    /// the rest of the organizer (the client reads them again under the store's lock before it
    /// renews them).
    OAuth { app: OAuthApp, tokens: OAuthTokens },
}

/// Whose Zoom account a call is for.
#[derive(Debug, Clone)]
pub struct Organizer {
    /// Stable key of the organizer (the Tsunagu account id): tokens, limiters and counters
    /// are kept per key.
    pub key: String,
    pub auth: Auth,
    /// The Zoom plan whose rate figures apply.
    pub plan: ZoomPlan,
}

/// Unix milliseconds now (injected so tests can move the UTC day).
pub type NowMs = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The result of adding a registrant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub registrant_id: String,
    /// Absent while the registrant waits for manual approval.
    pub join_url: Option<String>,
    pub status: RegistrantStatus,
    /// Found among the existing registrants instead of being added by this call.
    pub already_registered: bool,
}

/// How often a rotated pair is offered to the store before the call goes on without it.
const SAVE_ATTEMPTS: u32 = 3;

/// This process's view of one organizer's OAuth tokens.
#[derive(Default)]
struct OAuthState {
    /// The newest pair this process has used.
    held: Option<OAuthTokens>,
    /// An access token Zoom refused (124): never handed out again, whatever its expiry says.
    refused: Option<String>,
    /// A rotated pair the store did not take yet. Its refresh token is the only live one, so
    /// it is kept (and offered to the store again on every call) until the store has it.
    unsaved: Option<Unsaved>,
}

struct Unsaved {
    /// The refresh token of the stored pair this one replaces.
    replaces: String,
    tokens: OAuthTokens,
}

/// What the stored pair says about a pair that is not stored yet.
enum Reconciled {
    /// The store still holds the pair ours replaced: ours is the live one.
    Ours,
    /// The store already holds ours.
    Stored,
    /// The store holds another grant (the organizer connected again) or none: ours is obsolete.
    Superseded,
}

fn reconcile(unsaved: &Unsaved, stored: Option<&OAuthTokens>) -> Reconciled {
    match stored {
        Some(s) if s.refresh_token == unsaved.replaces => Reconciled::Ours,
        Some(s) if s.refresh_token == unsaved.tokens.refresh_token => Reconciled::Stored,
        _ => Reconciled::Superseded,
    }
}

fn store_failed(what: &str, e: String) -> ZoomError {
    ZoomError::Other { status: 0, code: None, message: format!("{what}: {e}") }
}

type OAuthSlot = Arc<tokio::sync::Mutex<OAuthState>>;

pub struct ZoomClient {
    cfg: ClientConfig,
    http: reqwest::Client,
    s2s: TokenCache,
    oauth: Mutex<HashMap<String, OAuthSlot>>,
    store: Option<Arc<dyn TokenStore>>,
    rate: Arc<dyn RateBudget>,
    daily: Arc<dyn DailyCounter>,
    now_ms: NowMs,
    jitter: Mutex<u64>,
}

struct Request<'a> {
    call: Call,
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<serde_json::Value>,
    /// Counted against this host's 100 creates+updates per day.
    host: Option<&'a str>,
}

impl<'a> Request<'a> {
    fn new(call: Call, method: Method, path: String) -> Request<'a> {
        Request { call, method, path, query: Vec::new(), body: None, host: None }
    }

    fn json(mut self, body: &impl Serialize) -> Result<Request<'a>, ZoomError> {
        let value = serde_json::to_value(body).map_err(|e| ZoomError::Other {
            status: 0,
            code: None,
            message: format!("unserializable body: {e}"),
        })?;
        self.body = Some(value);
        Ok(self)
    }

    /// GET, PATCH, PUT and DELETE leave Zoom in the same state when repeated; POST creates.
    fn safe(&self) -> bool {
        self.method != Method::POST
    }
}

fn unreadable(status: u16, e: impl std::fmt::Display) -> ZoomError {
    ZoomError::Other { status, code: None, message: format!("unreadable answer: {e}") }
}

impl ZoomClient {
    pub fn new(cfg: ClientConfig) -> ZoomClient {
        let http = http_client(cfg.timeout);
        ZoomClient {
            s2s: TokenCache::new(http.clone(), &cfg.oauth_base_url),
            http,
            cfg,
            oauth: Mutex::default(),
            store: None,
            rate: Arc::new(LocalLimits::default()),
            daily: Arc::new(LocalDaily::default()),
            now_ms: Arc::new(crate::oauth::now_ms),
            jitter: Mutex::new(0x9E37_79B9_7F4A_7C15),
        }
    }

    /// Where organizers' OAuth tokens are stored. Without a store, rotated pairs live only in
    /// this client (enough for a one-off check).
    pub fn with_token_store(mut self, store: Arc<dyn TokenStore>) -> ZoomClient {
        self.store = Some(store);
        self
    }

    /// The wall clock used for the UTC day of the daily counters (and OAuth token expiry).
    pub fn with_clock(mut self, now_ms: NowMs) -> ZoomClient {
        self.now_ms = now_ms;
        self
    }

    /// Where the per-second limits are kept (default: in this process).
    pub fn with_rate_budget(mut self, rate: Arc<dyn RateBudget>) -> ZoomClient {
        self.rate = rate;
        self
    }

    /// Where the daily allowances are counted (default: in this process, forgotten on restart).
    pub fn with_daily_counter(mut self, daily: Arc<dyn DailyCounter>) -> ZoomClient {
        self.daily = daily;
        self
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    // ---- tokens -------------------------------------------------------------------------

    /// A valid access token and its scopes.
    pub async fn token(&self, org: &Organizer) -> Result<(String, Vec<String>), ZoomError> {
        match &org.auth {
            Auth::S2s(creds) => {
                let t = self.s2s.token(&org.key, creds).await?;
                Ok((t.value, t.scopes))
            }
            Auth::OAuth { app, tokens } => {
                let t = self.oauth_token(&org.key, app, tokens).await?;
                Ok((t.access_token, t.scopes))
            }
        }
    }

    /// A newly issued token and its scopes, for a connection check: scopes added in the
    /// Marketplace reach only tokens issued after the change, and a cached token lives for an
    /// hour. (Server-to-Server only; an OAuth app's scopes change with a new authorization.)
    pub async fn fresh_token(&self, org: &Organizer) -> Result<(String, Vec<String>), ZoomError> {
        if let Auth::S2s(_) = &org.auth {
            let (cached, _) = self.token(org).await?;
            self.s2s.invalidate(&org.key, &cached).await;
        }
        self.token(org).await
    }

    fn oauth_slot(&self, key: &str) -> OAuthSlot {
        self.oauth.lock().expect("oauth slots").entry(key.to_string()).or_default().clone()
    }

    fn usable(&self, t: &OAuthTokens, st: &OAuthState) -> bool {
        t.fresh((self.now_ms)()) && st.refused.as_deref() != Some(t.access_token.as_str())
    }

    async fn oauth_token(&self, key: &str, app: &OAuthApp, given: &OAuthTokens) -> Result<OAuthTokens, ZoomError> {
        let slot = self.oauth_slot(key);
        let mut st = slot.lock().await;
        if st.unsaved.is_some() {
            self.save_unsaved(key, &mut st, 1).await;
        }
        // A pair not stored yet is newer than anything stored; otherwise the pair read from the
        // store may be newer than ours (another instance renewed it).
        let current = match (&st.unsaved, &st.held) {
            (Some(u), _) => u.tokens.clone(),
            (None, Some(h)) if h.expires_at_ms >= given.expires_at_ms => h.clone(),
            _ => given.clone(),
        };
        if self.usable(&current, &st) {
            st.held = Some(current.clone());
            return Ok(current);
        }
        let Some(store) = self.store.clone() else {
            let renewed =
                crate::oauth::refresh(&self.http, &self.cfg.oauth_base_url, app, &current.refresh_token).await?;
            st.held = Some(renewed.clone());
            st.refused = None;
            return Ok(renewed);
        };

        // Renew under the store's lock, from the pair stored now: another instance may have
        // renewed it since it was read, and its refresh token is then the only live one.
        let guard =
            store.lock(key.to_string()).await.map_err(|e| store_failed("could not lock stored Zoom tokens", e))?;
        let stored = guard.tokens().cloned();
        let live = match st.unsaved.as_ref().map(|u| reconcile(u, stored.as_ref())) {
            Some(Reconciled::Ours) => st.unsaved.as_ref().map(|u| u.tokens.clone()),
            Some(Reconciled::Stored | Reconciled::Superseded) => {
                st.unsaved = None;
                stored.clone()
            }
            None => stored.clone(),
        };
        let (Some(live), Some(stored)) = (live, stored) else {
            // Disconnected: nothing to renew from.
            return Err(ZoomError::ReconnectNeeded);
        };
        if self.usable(&live, &st) {
            st.held = Some(live.clone());
            if st.unsaved.is_none() {
                return Ok(live);
            }
            // Ours is still the live pair and the lock is held: store it now.
            if guard.save(live.clone()).await.is_ok() {
                st.unsaved = None;
            }
            return Ok(live);
        }
        let renewed = crate::oauth::refresh(&self.http, &self.cfg.oauth_base_url, app, &live.refresh_token).await?;
        // From here on the renewed pair holds the only live refresh token: it is never dropped.
        st.held = Some(renewed.clone());
        st.refused = None;
        st.unsaved = None;
        if guard.save(renewed.clone()).await.is_err() {
            st.unsaved = Some(Unsaved { replaces: stored.refresh_token, tokens: renewed.clone() });
            self.save_unsaved(key, &mut st, SAVE_ATTEMPTS).await;
        }
        Ok(renewed)
    }

    /// Offer a pair the store did not take to it again, under its lock, unless the store has
    /// moved on (then ours is dropped for the stored one). It stays unsaved if every attempt
    /// fails; the store implementation reports its own errors.
    async fn save_unsaved(&self, key: &str, st: &mut OAuthState, attempts: u32) {
        let Some(store) = self.store.clone() else { return };
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(self.backoff(attempt)).await;
            }
            let Some(unsaved) = st.unsaved.as_ref() else { return };
            let Ok(guard) = store.lock(key.to_string()).await else { continue };
            match reconcile(unsaved, guard.tokens()) {
                Reconciled::Ours => {
                    if guard.save(unsaved.tokens.clone()).await.is_ok() {
                        st.unsaved = None;
                        return;
                    }
                }
                Reconciled::Stored => {
                    st.unsaved = None;
                    return;
                }
                Reconciled::Superseded => {
                    st.held = guard.tokens().cloned();
                    st.unsaved = None;
                    return;
                }
            }
        }
    }

    /// After Zoom said 124: never hand out the refused token again, so the next call renews.
    async fn invalidate(&self, org: &Organizer, refused: &str) {
        match &org.auth {
            Auth::S2s(_) => self.s2s.invalidate(&org.key, refused).await,
            Auth::OAuth { .. } => {
                let slot = self.oauth_slot(&org.key);
                slot.lock().await.refused = Some(refused.to_string());
            }
        }
    }

    // ---- limits ---------------------------------------------------------------------------

    async fn acquire(&self, org: &Organizer, label: Label) -> Result<(), ZoomError> {
        let base = org.plan.rate(label);
        let rate = Rate { max: base.max, window_ms: base.window_ms + self.cfg.limit_margin_ms };
        self.rate.acquire(&format!("zoom:{}:{label:?}", org.key), rate).await.map_err(ZoomError::from)
    }

    fn next_utc_midnight(day: i64) -> String {
        jiff::Timestamp::from_millisecond((day + 1) * DAY_MS)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| "next 00:00 UTC".into())
    }

    /// The counter of a daily allowance: the 3 adds of an email, or the 100 creates+updates
    /// of a host, for this organizer.
    fn daily_key(registrant: bool, org: &Organizer, who: &str) -> String {
        let kind = if registrant { "add" } else { "host" };
        format!("zoom:{}:{kind}:{}", org.key, who.trim().to_lowercase())
    }

    /// Charge one unit of a daily allowance, or refuse when it is spent.
    async fn charge_daily(&self, registrant: bool, org: &Organizer, who: &str) -> Result<(), ZoomError> {
        let day = (self.now_ms)().div_euclid(DAY_MS);
        let limit = if registrant { REGISTRANT_DAILY_ADDS } else { HOST_DAILY_CREATES_UPDATES };
        if self.daily.charge(&Self::daily_key(registrant, org, who), day, limit).await? {
            return Ok(());
        }
        Err(if registrant {
            ZoomError::RegistrantDailyLimit
        } else {
            ZoomError::DailyLimit { retry_after: Some(Self::next_utc_midnight(day)) }
        })
    }

    /// Today's count of adds for an email (for diagnostics and tests).
    pub async fn registrant_adds_today(&self, org: &Organizer, email: &str) -> Result<u32, ZoomError> {
        let day = (self.now_ms)().div_euclid(DAY_MS);
        Ok(self.daily.used(&Self::daily_key(true, org, email), day).await?)
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.cfg.backoff_base.as_millis() as u64;
        let exp = base.saturating_mul(1 << attempt.min(6)).min(30_000);
        let mut j = self.jitter.lock().expect("jitter");
        *j ^= *j << 13;
        *j ^= *j >> 7;
        *j ^= *j << 17;
        Duration::from_millis(exp / 2 + *j % (exp / 2 + 1))
    }

    // ---- the one path every call takes -----------------------------------------------------

    async fn execute(&self, org: &Organizer, req: &Request<'_>) -> Result<(u16, String), ZoomError> {
        let mut attempt = 0;
        let mut renewed = false;
        // Counted once per call, and again for each repeat after an answer that may have been
        // counted by Zoom (5xx, timeout); a 429 or an expired token was not.
        let mut charge = true;
        loop {
            attempt += 1;
            self.acquire(org, req.call.label()).await?;
            if let (true, true, Some(host)) = (charge, req.call.counts_toward_host_daily(), req.host) {
                self.charge_daily(false, org, host).await?;
            }
            charge = false;
            let (token, result) = match self.token(org).await {
                Ok((token, _)) => {
                    let result = self.send_once(req, &token).await;
                    (Some(token), result)
                }
                Err(e) => (None, Err(e)),
            };
            let e = match result {
                Ok(ok) => return Ok(ok),
                Err(e) => e,
            };
            let again = match (e.retry(), token) {
                (Retry::RenewToken, Some(refused)) if !renewed => {
                    renewed = true;
                    self.invalidate(org, &refused).await;
                    Some(Duration::ZERO)
                }
                (Retry::After { ms }, _) if attempt < self.cfg.max_attempts * 2 => {
                    Some(Duration::from_millis(ms) + self.backoff(0) / 4)
                }
                (Retry::BackoffIfSafe, _) if req.safe() && attempt < self.cfg.max_attempts => {
                    charge = true;
                    Some(self.backoff(attempt))
                }
                _ => None,
            };
            match again {
                Some(pause) => tokio::time::sleep(pause).await,
                None => return Err(e),
            }
        }
    }

    async fn send_once(&self, req: &Request<'_>, token: &str) -> Result<(u16, String), ZoomError> {
        let url = format!("{}{}", self.cfg.api_base_url, req.path);
        let mut rb = self.http.request(req.method.clone(), url).bearer_auth(token);
        if !req.query.is_empty() {
            rb = rb.query(&req.query);
        }
        if let Some(body) = &req.body {
            rb = rb.json(body);
        }
        let resp = rb.send().await.map_err(|e| transport_error(&e))?;
        let status = resp.status().as_u16();
        let headers = header_pairs(resp.headers());
        let body = resp.text().await.map_err(|e| transport_error(&e))?;
        if (200..300).contains(&status) { Ok((status, body)) } else { Err(classify(status, &headers, &body)) }
    }

    async fn call<T: DeserializeOwned>(&self, org: &Organizer, req: &Request<'_>) -> Result<T, ZoomError> {
        let (status, body) = self.execute(org, req).await?;
        serde_json::from_str(&body).map_err(|e| unreadable(status, e))
    }

    async fn call_empty(&self, org: &Organizer, req: &Request<'_>) -> Result<(), ZoomError> {
        self.execute(org, req).await.map(|_| ())
    }

    // ---- users ------------------------------------------------------------------------------

    /// `GET /users/{userId}`: the host (user id, email, or `me` for OAuth apps).
    pub async fn get_user(&self, org: &Organizer, user: &str) -> Result<User, ZoomError> {
        self.call(org, &Request::new(Call::GetUser, Method::GET, format!("/users/{}", path_segment(user)))).await
    }

    // ---- meetings and webinars ---------------------------------------------------------------

    /// `POST /users/{host}/meetings` (not repeated on an ambiguous failure: Zoom has no
    /// idempotency key for creates; the caller sees the error and decides).
    pub async fn create_meeting(
        &self,
        org: &Organizer,
        host: &str,
        body: &crate::settings::MeetingCreate,
    ) -> Result<ZoomEvent, ZoomError> {
        let mut req =
            Request::new(Call::CreateMeeting, Method::POST, format!("/users/{}/meetings", path_segment(host)))
                .json(body)?;
        req.host = Some(host);
        self.call(org, &req).await
    }

    /// `POST /users/{host}/webinars`.
    pub async fn create_webinar(
        &self,
        org: &Organizer,
        host: &str,
        body: &crate::settings::WebinarCreate,
    ) -> Result<ZoomEvent, ZoomError> {
        let mut req =
            Request::new(Call::CreateWebinar, Method::POST, format!("/users/{}/webinars", path_segment(host)))
                .json(body)?;
        req.host = Some(host);
        self.call(org, &req).await
    }

    /// `GET /meetings/{id}` or `/webinars/{id}`.
    pub async fn get_event(&self, org: &Organizer, event: EventRef) -> Result<ZoomEvent, ZoomError> {
        let call = match event {
            EventRef::Meeting(_) => Call::GetMeeting,
            EventRef::Webinar(_) => Call::GetWebinar,
        };
        self.call(org, &Request::new(call, Method::GET, event.path())).await
    }

    /// `PATCH /meetings/{id}` or `/webinars/{id}` (204); counted against `host`'s daily 100.
    pub async fn update_event(
        &self,
        org: &Organizer,
        event: EventRef,
        host: &str,
        patch: &impl Serialize,
    ) -> Result<(), ZoomError> {
        let call = match event {
            EventRef::Meeting(_) => Call::UpdateMeeting,
            EventRef::Webinar(_) => Call::UpdateWebinar,
        };
        let mut req = Request::new(call, Method::PATCH, event.path()).json(patch)?;
        req.host = Some(host);
        self.call_empty(org, &req).await
    }

    /// `DELETE /meetings/{id}` or `/webinars/{id}` (204). Already gone counts as done.
    pub async fn delete_event(&self, org: &Organizer, event: EventRef, opts: DeleteOptions) -> Result<(), ZoomError> {
        let (call, flag) = match event {
            EventRef::Meeting(_) => (Call::DeleteMeeting, "cancel_meeting_reminder"),
            EventRef::Webinar(_) => (Call::DeleteWebinar, "cancel_webinar_reminder"),
        };
        let mut req = Request::new(call, Method::DELETE, event.path());
        req.query.push((flag, opts.notify_registrants.to_string()));
        match self.call_empty(org, &req).await {
            // A retried delete whose first attempt went through finds nothing: that is success.
            Err(ZoomError::EventGone) => Ok(()),
            other => other,
        }
    }

    // ---- registrants --------------------------------------------------------------------------

    fn registrant_call(event: EventRef, meeting: Call, webinar: Call) -> Call {
        match event {
            EventRef::Meeting(_) => meeting,
            EventRef::Webinar(_) => webinar,
        }
    }

    /// Every registrant with `status`, all pages (300 per page).
    pub async fn list_registrants(
        &self,
        org: &Organizer,
        event: EventRef,
        status: RegistrantStatus,
    ) -> Result<Vec<Registrant>, ZoomError> {
        let mut out = Vec::new();
        self.scan_registrants(org, event, status, |r| {
            out.push(r);
            false
        })
        .await?;
        Ok(out)
    }

    /// Page through registrants until `stop` says so; returns whether it stopped early.
    async fn scan_registrants(
        &self,
        org: &Organizer,
        event: EventRef,
        status: RegistrantStatus,
        mut stop: impl FnMut(Registrant) -> bool,
    ) -> Result<bool, ZoomError> {
        let call = Self::registrant_call(event, Call::ListMeetingRegistrants, Call::ListWebinarRegistrants);
        let mut token = String::new();
        loop {
            let mut req = Request::new(call, Method::GET, format!("{}/registrants", event.path()));
            req.query.push(("status", status.as_str().to_string()));
            req.query.push(("page_size", "300".to_string()));
            if !token.is_empty() {
                req.query.push(("next_page_token", token.clone()));
            }
            let page: RegistrantPage = self.call(org, &req).await?;
            for mut r in page.registrants {
                r.status = status;
                if stop(r) {
                    return Ok(true);
                }
            }
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = t,
                _ => return Ok(false),
            }
        }
    }

    /// The registrant with this email, in any status.
    pub async fn find_registrant(
        &self,
        org: &Organizer,
        event: EventRef,
        email: &str,
    ) -> Result<Option<Registrant>, ZoomError> {
        let wanted = email.trim().to_lowercase();
        for status in [RegistrantStatus::Approved, RegistrantStatus::Pending, RegistrantStatus::Denied] {
            let mut found = None;
            self.scan_registrants(org, event, status, |r| {
                let hit = r.email.trim().to_lowercase() == wanted;
                if hit {
                    found = Some(r);
                }
                hit
            })
            .await?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Register a person once, approved. `maybe_added_before` is true when an earlier attempt
    /// (a job run that crashed or failed) may have reached Zoom: then the email is looked up
    /// first. Within this call, an answer that leaves the outcome unknown (5xx, timeout) is
    /// followed by a look-up, never by a blind repeat. Each POST is counted against the email's
    /// 3 adds per UTC day; when they are spent the call refuses without asking Zoom.
    ///
    /// Tsunagu's events with registration use manual approval, so that a stranger who finds
    /// Zoom's own registration page waits for the host. A meeting add therefore carries
    /// `auto_approve`; a webinar add cannot (NOTES §5.1), so a person left pending is approved
    /// with a status call and their join URL read back from the approved list.
    pub async fn add_registrant(
        &self,
        org: &Organizer,
        event: EventRef,
        person: &NewRegistrant,
        maybe_added_before: bool,
    ) -> Result<Registration, ZoomError> {
        let call = Self::registrant_call(event, Call::AddMeetingRegistrant, Call::AddWebinarRegistrant);
        let mut person = person.clone();
        person.auto_approve = match event {
            EventRef::Meeting(_) => Some(true),
            EventRef::Webinar(_) => None,
        };
        let mut look_up = maybe_added_before;
        let mut unknown_outcomes = 0;
        let registration = loop {
            if look_up && let Some(r) = self.find_registrant(org, event, &person.email).await? {
                if r.status == RegistrantStatus::Denied {
                    return Err(ZoomError::RegistrantDenied);
                }
                break Registration {
                    registrant_id: r.id,
                    join_url: r.join_url,
                    status: r.status,
                    already_registered: true,
                };
            }
            self.charge_daily(true, org, &person.email).await?;
            let req = Request::new(call, Method::POST, format!("{}/registrants", event.path())).json(&person)?;
            match self.call::<AddedRegistrant>(org, &req).await {
                Ok(a) => {
                    let status =
                        if a.join_url.is_some() { RegistrantStatus::Approved } else { RegistrantStatus::Pending };
                    break Registration {
                        registrant_id: a.registrant_id,
                        join_url: a.join_url,
                        status,
                        already_registered: false,
                    };
                }
                Err(e) if e.retry() == Retry::BackoffIfSafe && unknown_outcomes + 1 < self.cfg.max_attempts => {
                    unknown_outcomes += 1;
                    look_up = true;
                    tokio::time::sleep(self.backoff(unknown_outcomes)).await;
                }
                Err(e) => return Err(e),
            }
        };
        if registration.status != RegistrantStatus::Pending {
            return Ok(registration);
        }
        // Approving twice is harmless, so the status call is repeated after a lost answer.
        let who = [RegistrantRef { id: registration.registrant_id.clone(), email: person.email.clone() }];
        self.set_registrant_status(org, event, StatusAction::Approve, &who).await?;
        let approved = self
            .find_registrant(org, event, &person.email)
            .await?
            .filter(|r| r.status == RegistrantStatus::Approved)
            .ok_or_else(|| ZoomError::Other {
                status: 200,
                code: None,
                message: format!("registrant {} is not approved after approving", registration.registrant_id),
            })?;
        Ok(Registration { join_url: approved.join_url, status: RegistrantStatus::Approved, ..registration })
    }

    /// `PUT …/registrants/status` (204): approve, cancel or deny.
    pub async fn set_registrant_status(
        &self,
        org: &Organizer,
        event: EventRef,
        action: StatusAction,
        registrants: &[RegistrantRef],
    ) -> Result<(), ZoomError> {
        let call = Self::registrant_call(event, Call::MeetingRegistrantStatus, Call::WebinarRegistrantStatus);
        let req = Request::new(call, Method::PUT, format!("{}/registrants/status", event.path()))
            .json(&StatusBody { action, registrants })?;
        self.call_empty(org, &req).await
    }

    /// `DELETE …/registrants/{registrantId}` (204): unlike cancel, the email may register again.
    pub async fn delete_registrant(
        &self,
        org: &Organizer,
        event: EventRef,
        registrant_id: &str,
    ) -> Result<(), ZoomError> {
        let call = Self::registrant_call(event, Call::DeleteMeetingRegistrant, Call::DeleteWebinarRegistrant);
        let path = format!("{}/registrants/{}", event.path(), path_segment(registrant_id));
        self.call_empty(org, &Request::new(call, Method::DELETE, path)).await
    }

    /// `GET …/registrants/questions`.
    pub async fn registration_questions(&self, org: &Organizer, event: EventRef) -> Result<Questions, ZoomError> {
        let call = Self::registrant_call(event, Call::MeetingRegistrationQuestions, Call::WebinarRegistrationQuestions);
        self.call(org, &Request::new(call, Method::GET, format!("{}/registrants/questions", event.path()))).await
    }
}

/// Path segments are user ids, emails or registrant ids: encode what is not safe in a path.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@+".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(path_segment("a.b+c@example.com"), "a.b+c@example.com");
        assert_eq!(path_segment("x/y z"), "x%2Fy%20z");
    }

    #[tokio::test]
    async fn daily_allowances_reset_at_utc_midnight() {
        let now = Arc::new(std::sync::atomic::AtomicI64::new(1_764_000_000_000));
        let clock = now.clone();
        let client = ZoomClient::new(ClientConfig::new("http://127.0.0.1:9/v2", "http://127.0.0.1:9"))
            .with_clock(Arc::new(move || clock.load(std::sync::atomic::Ordering::SeqCst)));
        let org = Organizer {
            key: "o".into(),
            auth: Auth::S2s(S2sCredentials {
                account_id: "a".into(),
                client_id: "c".into(),
                client_secret: "s".into(),
            }),
            plan: ZoomPlan::Pro,
        };
        for _ in 0..3 {
            client.charge_daily(true, &org, "A@example.com").await.unwrap();
        }
        assert_eq!(client.charge_daily(true, &org, "a@example.com").await, Err(ZoomError::RegistrantDailyLimit));
        assert_eq!(client.registrant_adds_today(&org, "a@EXAMPLE.com").await, Ok(3));
        for _ in 0..HOST_DAILY_CREATES_UPDATES {
            client.charge_daily(false, &org, "host@example.com").await.unwrap();
        }
        let Err(ZoomError::DailyLimit { retry_after: Some(at) }) =
            client.charge_daily(false, &org, "host@example.com").await
        else {
            panic!("the 101st create/update is refused")
        };
        assert!(at.ends_with("T00:00:00Z"), "{at}");
        now.fetch_add(DAY_MS, std::sync::atomic::Ordering::SeqCst);
        assert!(client.charge_daily(true, &org, "a@example.com").await.is_ok());
        assert!(client.charge_daily(false, &org, "host@example.com").await.is_ok());
    }
}
