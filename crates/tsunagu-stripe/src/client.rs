//! The Stripe REST client. Every call goes through [`StripeClient::execute`], which waits for the
//! organizer's rate budget (NOTES §1: 25 requests/s in test mode, 100 reads and 100 writes/s in
//! live mode, per Stripe account; kept where the client's [`RateBudget`] keeps them), sends with
//! the pinned `Stripe-Version` and, on a POST, the caller's `Idempotency-Key`, and retries 429s,
//! 5xx answers, timeouts and failed connections with backoff, sending the same key again so that
//! Stripe does the work at most once. A POST is only retried because it carries a key.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::de::DeserializeOwned;
use tsunagu_core::rate::{BoxFuture, BudgetError, Rate, RateBudget, Window};

use crate::error::{StripeError, classify};
use crate::form::Form;
use crate::key::{ApiKey, Mode};
use crate::model::*;
use crate::{API_VERSION, EVENTS};

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `https://api.stripe.com` in production (`stripe.api_base_url`).
    pub api_base_url: String,
    /// Per request.
    pub timeout: Duration,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// First backoff pause; doubled per attempt.
    pub backoff_base: Duration,
    /// Added to each one-second window, so that requests whose travel time varies still arrive
    /// within Stripe's limit.
    pub limit_margin_ms: u64,
}

impl ClientConfig {
    pub fn new(api_base_url: &str) -> ClientConfig {
        ClientConfig {
            api_base_url: api_base_url.trim_end_matches('/').to_string(),
            timeout: Duration::from_secs(30),
            max_attempts: 4,
            backoff_base: Duration::from_millis(500),
            limit_margin_ms: 50,
        }
    }
}

/// Who calls: the organizer's key, and the name their rate budget is kept under.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key: ApiKey,
    /// Our name for the organizer's Stripe account (the budget key), e.g. our account id.
    pub owner: String,
}

/// One line of a checkout: integer yen (JPY has no minor unit: ¥3,000 is 3000).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineItem {
    pub name: String,
    pub unit_amount: i64,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRequest {
    /// Our order's reference: `client_reference_id`, and `metadata[tsunagu_order]` on the
    /// session and on its PaymentIntent (a session's metadata is not copied to its payment, and
    /// a refund from Stripe's dashboard carries only the payment's).
    pub order_ref: String,
    /// More metadata, set on the session and the PaymentIntent alike.
    pub metadata: Vec<(String, String)>,
    pub line_items: Vec<LineItem>,
    /// `card`, `konbini`.
    pub methods: Vec<String>,
    /// 1–60 (konbini only).
    pub konbini_expires_after_days: Option<u32>,
    pub customer_email: Option<String>,
    pub success_url: String,
    pub cancel_url: String,
    /// Unix seconds; Stripe allows 1–24 h from now (NOTES §1).
    pub expires_at: Option<i64>,
}

/// The metadata key that carries our order's reference.
pub const ORDER_KEY: &str = "tsunagu_order";

impl CheckoutRequest {
    pub fn form(&self) -> Form {
        let mut f = Form::new()
            .set("mode", "payment")
            .set("locale", "ja")
            .set("client_reference_id", &self.order_ref)
            .set("success_url", &self.success_url)
            .set("cancel_url", &self.cancel_url)
            .set_opt("customer_email", self.customer_email.as_deref())
            .set_opt("expires_at", self.expires_at);
        for (i, item) in self.line_items.iter().enumerate() {
            let p = format!("line_items[{i}]");
            f = f
                .set(format!("{p}[price_data][currency]"), "jpy")
                .set(format!("{p}[price_data][unit_amount]"), item.unit_amount)
                .set(format!("{p}[price_data][product_data][name]"), &item.name)
                .set(format!("{p}[quantity]"), item.quantity);
        }
        for m in &self.methods {
            f = f.set("payment_method_types[]", m);
        }
        if self.methods.iter().any(|m| m == "konbini") {
            f = f.set_opt("payment_method_options[konbini][expires_after_days]", self.konbini_expires_after_days);
        }
        let meta: Vec<(&str, &str)> = std::iter::once((ORDER_KEY, self.order_ref.as_str()))
            .chain(self.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .collect();
        f.map("metadata", meta.iter().copied()).map("payment_intent_data[metadata]", meta.iter().copied())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub payment_intent: String,
    /// Yen; `None` refunds what is left.
    pub amount: Option<i64>,
    /// `requested_by_customer`, `duplicate`, `fraudulent`.
    pub reason: Option<String>,
    pub metadata: Vec<(String, String)>,
}

/// A permission a restricted key needs (NOTES §0), as Stripe's dashboard names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    CheckoutSessionsWrite,
    RefundsWrite,
    WebhookEndpointsWrite,
    PaymentIntentsRead,
    ChargesRead,
    EventsRead,
}

impl Permission {
    pub const ALL: [Permission; 6] = [
        Permission::CheckoutSessionsWrite,
        Permission::RefundsWrite,
        Permission::WebhookEndpointsWrite,
        Permission::PaymentIntentsRead,
        Permission::ChargesRead,
        Permission::EventsRead,
    ];

    /// How the organizer finds it in the restricted key's settings.
    pub fn label_ja(self) -> &'static str {
        match self {
            Permission::CheckoutSessionsWrite => "Checkout Sessions（Checkout セッション）: 書き込み",
            Permission::RefundsWrite => "Refunds（返金）: 書き込み",
            Permission::WebhookEndpointsWrite => "Webhook Endpoints（Webhook エンドポイント）: 書き込み",
            Permission::PaymentIntentsRead => "PaymentIntents: 読み取り",
            Permission::ChargesRead => "Charges（支払い）: 読み取り",
            Permission::EventsRead => "Events（イベント）: 読み取り",
        }
    }
}

/// What a key can do, as [`StripeClient::check_key`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCheck {
    pub mode: Mode,
    /// `None` when the key may not read the account (a restricted key without that permission).
    pub account: Option<Account>,
    /// Permissions a restricted key lacks (always empty for a secret key).
    pub missing: Vec<Permission>,
}

/// One-second windows kept in this process (the default budget).
#[derive(Default)]
pub struct LocalLimits {
    windows: Mutex<std::collections::HashMap<String, Window>>,
    epoch: std::sync::OnceLock<Instant>,
}

impl RateBudget for LocalLimits {
    fn acquire<'a>(&'a self, key: &'a str, rate: Rate) -> BoxFuture<'a, Result<(), BudgetError>> {
        Box::pin(async move {
            let epoch = *self.epoch.get_or_init(Instant::now);
            loop {
                let wait = {
                    let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
                    let window = w.entry(key.to_string()).or_insert_with(|| Window::new(rate));
                    window.try_acquire(epoch.elapsed().as_millis() as u64)
                };
                match wait {
                    Ok(()) => return Ok(()),
                    Err(ms) => tokio::time::sleep(Duration::from_millis(ms.max(1))).await,
                }
            }
        })
    }
}

pub struct StripeClient {
    cfg: ClientConfig,
    http: reqwest::Client,
    rate: Arc<dyn RateBudget>,
}

/// A reqwest client for Stripe over TLS (rustls with ring) and for the sandbox over HTTP.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("a TLS provider is installed")
}

impl StripeClient {
    pub fn new(cfg: ClientConfig) -> StripeClient {
        StripeClient { http: http_client(cfg.timeout), cfg, rate: Arc::new(LocalLimits::default()) }
    }

    /// Where the per-second limits are kept (default: in this process).
    pub fn with_rate_budget(mut self, rate: Arc<dyn RateBudget>) -> StripeClient {
        self.rate = rate;
        self
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    async fn acquire(&self, c: &Caller, write: bool) -> Result<(), StripeError> {
        let mode = c.key.mode();
        let rate = Rate { max: mode.rate_per_second(), window_ms: 1000 + self.cfg.limit_margin_ms };
        // Live mode counts reads and writes apart; test mode has one allowance.
        let key = match (mode, write) {
            (Mode::Test, _) => format!("stripe:{}:test", c.owner),
            (Mode::Live, true) => format!("stripe:{}:write", c.owner),
            (Mode::Live, false) => format!("stripe:{}:read", c.owner),
        };
        self.rate.acquire(&key, rate).await.map_err(|e| StripeError::LimitsUnavailable { detail: e.0 })
    }

    /// Send one call, retrying what may be retried. A POST is retried only when it carries an
    /// idempotency key (`idem`).
    async fn execute<T: DeserializeOwned>(
        &self,
        c: &Caller,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        form: Option<&Form>,
        idem: Option<&str>,
    ) -> Result<T, StripeError> {
        let write = method != Method::GET;
        // GET and DELETE leave Stripe as they found it when repeated; a POST only with its key.
        let may_retry = method != Method::POST || idem.is_some();
        let url = format!("{}{path}", self.cfg.api_base_url);
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.acquire(c, write).await?;
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(c.key.expose())
                .header("Stripe-Version", API_VERSION)
                .query(query);
            if let Some(k) = idem {
                req = req.header("Idempotency-Key", k);
            }
            if let Some(f) = form {
                req = req.header("Content-Type", "application/x-www-form-urlencoded").body(f.encode());
            }
            let (err, should_retry) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let should = resp
                        .headers()
                        .get("stripe-should-retry")
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v.eq_ignore_ascii_case("true"));
                    let body = match resp.text().await {
                        Ok(b) => b,
                        Err(e) => {
                            let err = transport(&e);
                            if may_retry && attempt < self.cfg.max_attempts {
                                self.pause(attempt).await;
                                continue;
                            }
                            return Err(err);
                        }
                    };
                    if (200..300).contains(&status) {
                        return serde_json::from_str(&body)
                            .map_err(|e| StripeError::Unreadable { status, detail: e.to_string() });
                    }
                    (classify(status, &body), should)
                }
                Err(e) => (transport(&e), None),
            };
            let retry = should_retry.unwrap_or_else(|| err.retryable());
            if !(retry && may_retry && attempt < self.cfg.max_attempts) {
                return Err(err);
            }
            self.pause(attempt).await;
        }
    }

    async fn pause(&self, attempt: u32) {
        let factor = 1u32 << (attempt - 1).min(6);
        tokio::time::sleep(self.cfg.backoff_base * factor).await;
    }

    // ---- calls ------------------------------------------------------------------------------

    pub async fn account(&self, c: &Caller) -> Result<Account, StripeError> {
        self.execute(c, Method::GET, "/v1/account", &[], None, None).await
    }

    pub async fn create_checkout_session(
        &self,
        c: &Caller,
        req: &CheckoutRequest,
        idem: &str,
    ) -> Result<CheckoutSession, StripeError> {
        self.execute(c, Method::POST, "/v1/checkout/sessions", &[], Some(&req.form()), Some(idem)).await
    }

    pub async fn checkout_session(&self, c: &Caller, id: &str) -> Result<CheckoutSession, StripeError> {
        self.execute(c, Method::GET, &format!("/v1/checkout/sessions/{}", seg(id)), &[], None, None).await
    }

    /// Close an open session so that it can no longer be paid.
    pub async fn expire_checkout_session(
        &self,
        c: &Caller,
        id: &str,
        idem: &str,
    ) -> Result<CheckoutSession, StripeError> {
        let path = format!("/v1/checkout/sessions/{}/expire", seg(id));
        self.execute(c, Method::POST, &path, &[], None, Some(idem)).await
    }

    pub async fn payment_intent(&self, c: &Caller, id: &str) -> Result<PaymentIntent, StripeError> {
        self.execute(c, Method::GET, &format!("/v1/payment_intents/{}", seg(id)), &[], None, None).await
    }

    pub async fn charge(&self, c: &Caller, id: &str) -> Result<Charge, StripeError> {
        self.execute(c, Method::GET, &format!("/v1/charges/{}", seg(id)), &[], None, None).await
    }

    pub async fn create_refund(&self, c: &Caller, req: &RefundRequest, idem: &str) -> Result<Refund, StripeError> {
        let f = Form::new()
            .set("payment_intent", &req.payment_intent)
            .set_opt("amount", req.amount)
            .set_opt("reason", req.reason.as_deref())
            .map("metadata", req.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.execute(c, Method::POST, "/v1/refunds", &[], Some(&f), Some(idem)).await
    }

    pub async fn refund(&self, c: &Caller, id: &str) -> Result<Refund, StripeError> {
        self.execute(c, Method::GET, &format!("/v1/refunds/{}", seg(id)), &[], None, None).await
    }

    /// Cancel a refund still waiting (`requires_action`, NOTES §4).
    pub async fn cancel_refund(&self, c: &Caller, id: &str, idem: &str) -> Result<Refund, StripeError> {
        self.execute(c, Method::POST, &format!("/v1/refunds/{}/cancel", seg(id)), &[], None, Some(idem)).await
    }

    pub async fn webhook_endpoints(&self, c: &Caller) -> Result<Vec<WebhookEndpoint>, StripeError> {
        let list: List<WebhookEndpoint> =
            self.execute(c, Method::GET, "/v1/webhook_endpoints", &[("limit", "100".into())], None, None).await?;
        Ok(list.data)
    }

    /// Create the endpoint for `url` with the pinned API version and [`EVENTS`]. The answer's
    /// `secret` is shown this once.
    pub async fn create_webhook_endpoint(
        &self,
        c: &Caller,
        url: &str,
        idem: &str,
    ) -> Result<WebhookEndpoint, StripeError> {
        let mut f =
            Form::new().set("url", url).set("api_version", API_VERSION).set("description", "Tsunagu（自動作成）");
        for e in EVENTS {
            f = f.set("enabled_events[]", e);
        }
        self.execute(c, Method::POST, "/v1/webhook_endpoints", &[], Some(&f), Some(idem)).await
    }

    pub async fn delete_webhook_endpoint(&self, c: &Caller, id: &str) -> Result<(), StripeError> {
        let path = format!("/v1/webhook_endpoints/{}", seg(id));
        let _: serde_json::Value = self.execute(c, Method::DELETE, &path, &[], None, None).await?;
        Ok(())
    }

    /// Events of [`EVENTS`] created at or after `created_gte` (Unix seconds), newest first, a
    /// page of up to 100 after `starting_after`.
    pub async fn events(
        &self,
        c: &Caller,
        created_gte: i64,
        starting_after: Option<&str>,
    ) -> Result<List<Event>, StripeError> {
        let mut q: Vec<(&str, String)> = vec![("limit", "100".into()), ("created[gte]", created_gte.to_string())];
        for e in EVENTS {
            q.push(("types[]", e.into()));
        }
        if let Some(s) = starting_after {
            q.push(("starting_after", s.into()));
        }
        self.execute(c, Method::GET, "/v1/events", &q, None, None).await
    }

    /// What the key can do. A secret key can do everything; a restricted key is probed with
    /// requests that cannot succeed and so change nothing: Stripe refuses them for their
    /// parameters (400/404) when the key holds the permission, and for the permission (403)
    /// when it does not.
    pub async fn check_key(&self, c: &Caller) -> Result<KeyCheck, StripeError> {
        let account = match self.account(c).await {
            Ok(a) => Some(a),
            Err(StripeError::Forbidden { .. }) if c.key.restricted() => None,
            Err(e) => return Err(e),
        };
        let mut missing = Vec::new();
        if c.key.restricted() {
            let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            for p in Permission::ALL {
                // Each probe is a well-formed request that cannot succeed: a session without
                // line items, a refund or a read of an id that does not exist, an endpoint whose
                // URL is not one.
                let (method, path, form) = match p {
                    Permission::CheckoutSessionsWrite => (
                        Method::POST,
                        "/v1/checkout/sessions",
                        Some(
                            Form::new()
                                .set("mode", "payment")
                                .set("payment_method_types[]", "card")
                                .set("success_url", "https://probe.invalid/")
                                .set("cancel_url", "https://probe.invalid/"),
                        ),
                    ),
                    Permission::RefundsWrite => {
                        (Method::POST, "/v1/refunds", Some(Form::new().set("payment_intent", "pi_tsunagu_probe")))
                    }
                    Permission::WebhookEndpointsWrite => (
                        Method::POST,
                        "/v1/webhook_endpoints",
                        Some(Form::new().set("url", "probe").set("enabled_events[]", EVENTS[0])),
                    ),
                    Permission::PaymentIntentsRead => (Method::GET, "/v1/payment_intents/pi_tsunagu_probe", None),
                    Permission::ChargesRead => (Method::GET, "/v1/charges/ch_tsunagu_probe", None),
                    Permission::EventsRead => (Method::GET, "/v1/events", None),
                };
                let query: &[(&str, String)] = if p == Permission::EventsRead { &[("limit", "1".into())] } else { &[] };
                let idem = form.as_ref().map(|_| format!("tsunagu-probe-{nonce}-{p:?}"));
                match self.execute::<serde_json::Value>(c, method, path, query, form.as_ref(), idem.as_deref()).await {
                    Ok(_) | Err(StripeError::Invalid { .. }) => {}
                    Err(StripeError::Forbidden { .. } | StripeError::BadKey { .. }) => missing.push(p),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(KeyCheck { mode: c.key.mode(), account, missing })
    }
}

/// An id as one path segment (ids are `[A-Za-z0-9_]`; anything else is escaped).
fn seg(id: &str) -> String {
    id.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b == b'_' { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn transport(e: &reqwest::Error) -> StripeError {
    if e.is_timeout() { StripeError::Timeout } else { StripeError::Unreachable { detail: e.to_string() } }
}
