//! The Stripe sandbox: a stateful fake of the parts of Stripe Tsunagu uses, built from the
//! official schema (`../shared/specs/stripe/spec3.json`, API version 2020-08-27) and `NOTES.md`,
//! never from our client.
//!
//! - Accounts with secret keys and restricted keys (a restricted key without a permission is
//!   refused with 403 naming it, before its parameters are looked at).
//! - REST under `/v1` ([`api`]): the account, Checkout Sessions (card and konbini, JPY minimums
//!   ¥50 and ¥120, konbini maximum ¥300,000, `expires_after_days` 1–60, `expires_at` 1–24 h),
//!   PaymentIntents, charges, refunds (konbini refunds wait in `requires_action`), webhook
//!   endpoints whose `secret` is shown once, and the events list.
//! - Idempotency keys: a key used again with the same parameters answers the first answer again
//!   (`Idempotent-Replayed: true`); with other parameters, 400 `idempotency_error`.
//! - Rate limits per account: 25 requests/s in test mode, 100 reads and 100 writes/s in live
//!   mode, over which come 429s with `code: rate_limit`.
//! - Signed webhooks (`Stripe-Signature: t=…,v1=…`) to each endpoint, retried on non-2xx with
//!   backoff; faults can delay, duplicate, reorder or lose them, and injected 429/5xx/timeouts hit
//!   the API ([`Faults`]).
//! - A clock that tests move ([`StripeSandbox::advance`]): konbini vouchers run until 23:59:59
//!   JST of their last day, and open sessions expire.
//! - Pages ([`page`]): a hosted checkout page (card: 4242… pays, 4000 0000 0000 0002 is
//!   declined; konbini: a voucher), the voucher page with "paid at the store" and "let it expire",
//!   and a small dashboard that lists payments and refunds them.

mod api;
pub(crate) mod page;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get, post};
use serde_json::{Map, Value, json};

/// A Stripe account in the sandbox.
#[derive(Debug, Clone)]
pub struct SandboxAccount {
    pub id: String,
    /// The business name Checkout shows.
    pub display_name: String,
    pub email: String,
    /// Whether the konbini capability is active (it needs a review on a live account).
    pub konbini: bool,
}

/// Fault rates (0.0–1.0) for `/v1` requests and for webhook deliveries.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub rate_429: f64,
    /// 500 before the work is done (Stripe saves no idempotent result then).
    pub rate_500: f64,
    /// The work is done, then the answer is held for `timeout_hold` (past the client's timeout).
    pub rate_timeout: f64,
    pub timeout_hold: Duration,
    /// A webhook delivery is never made (only the events list has the event).
    pub webhook_lost: f64,
    /// A webhook is delivered twice.
    pub webhook_duplicate: f64,
    /// Each delivery waits a random time up to this, so deliveries arrive out of order.
    pub webhook_jitter: Duration,
    pub seed: u64,
}

/// One API request and its answer, as recorded.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    /// With the `/v1` prefix, without the query.
    pub path: String,
    pub query: String,
    pub status: u16,
    pub request_body: String,
    pub response_body: String,
    pub headers: Vec<(String, String)>,
}

/// One attempt to deliver an event to an endpoint.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event_id: String,
    pub event_type: String,
    pub endpoint_id: String,
    pub url: String,
    pub body: String,
    /// `None`: no answer (connection refused, timeout).
    pub status: Option<u16>,
}

#[derive(Debug, Clone, Default)]
pub struct SandboxStats {
    pub requests: u64,
    pub rate_429: u64,
    pub injected_429: u64,
    pub injected_500: u64,
    pub injected_timeouts: u64,
    pub idempotent_replays: u64,
    /// Highest number of admitted requests in any sliding 1000 ms, per account.
    pub max_in_any_second: HashMap<String, u32>,
}

#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub secret: String,
    pub account: String,
    pub livemode: bool,
    /// `None`: a secret key (everything). `Some`: a restricted key's permissions, as Stripe
    /// names them (`rak_checkout_session_write`, …).
    pub permissions: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub id: String,
    pub account: String,
    pub livemode: bool,
    pub status: &'static str,
    pub payment_status: &'static str,
    pub amount_total: i64,
    pub items: Vec<(String, i64, i64)>,
    pub methods: Vec<String>,
    pub konbini_days: Option<i64>,
    pub success_url: String,
    pub cancel_url: String,
    pub client_reference_id: Option<String>,
    pub customer_email: Option<String>,
    pub metadata: Map<String, Value>,
    pub expires_at: i64,
    pub payment_intent: String,
    /// The last card error shown on the page.
    pub declined: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Intent {
    pub id: String,
    pub account: String,
    pub livemode: bool,
    pub amount: i64,
    pub status: &'static str,
    pub metadata: Map<String, Value>,
    pub methods: Vec<String>,
    pub method: Option<String>,
    pub konbini_expires_at: Option<i64>,
    pub konbini_codes: Option<(String, String)>,
    pub charge: Option<String>,
    pub created: i64,
    pub canceled_at: Option<i64>,
    pub last_error: Option<(String, String)>,
    pub session: String,
    pub email: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Charge {
    pub id: String,
    pub account: String,
    pub livemode: bool,
    pub amount: i64,
    pub amount_refunded: i64,
    pub intent: String,
    pub metadata: Map<String, Value>,
    pub method: String,
    pub created: i64,
    pub refunds: Vec<String>,
    pub email: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Refund {
    pub id: String,
    pub account: String,
    pub amount: i64,
    pub charge: String,
    pub intent: String,
    pub status: &'static str,
    pub reason: Option<String>,
    pub metadata: Map<String, Value>,
    pub created: i64,
    /// Konbini: the buyer was mailed for bank details (NOTES §4).
    pub action_email: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub id: String,
    pub account: String,
    pub livemode: bool,
    pub url: String,
    pub secret: String,
    pub events: Vec<String>,
    pub api_version: Option<String>,
    pub description: Option<String>,
    pub created: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub id: String,
    pub account: String,
    pub livemode: bool,
    pub kind: String,
    pub created: i64,
    pub object: Value,
    pub request: Option<(String, Option<String>)>,
    pub pending: i64,
}

pub(crate) struct Idem {
    pub fingerprint: String,
    pub status: u16,
    pub body: Value,
}

pub(crate) struct Inner {
    pub accounts: Vec<SandboxAccount>,
    pub keys: Vec<Key>,
    pub sessions: HashMap<String, Session>,
    pub intents: HashMap<String, Intent>,
    pub charges: HashMap<String, Charge>,
    pub refunds: HashMap<String, Refund>,
    pub endpoints: Vec<Endpoint>,
    /// Oldest first.
    pub events: Vec<Event>,
    pub idem: HashMap<(String, String), Idem>,
    /// Admission times (ms) per (account, read/write/test), for the rate limit.
    pub admitted: HashMap<String, VecDeque<i64>>,
    pub rng: u64,
    pub fault_rng: u64,
    pub faults: Faults,
    pub stats: SandboxStats,
    pub exchanges: VecDeque<Exchange>,
    pub deliveries: Vec<Delivery>,
    pub recording: bool,
    pub down: bool,
    /// Seconds added to the wall clock.
    pub offset_s: i64,
    /// Deliveries are kept back until released (a webhook "never arrives" until then).
    pub held: bool,
    pub held_queue: Vec<(String, String)>,
    /// First pause before a failed delivery is tried again; doubled per attempt.
    pub retry_base: Duration,
    pub max_attempts: u32,
    /// Base URL of the sandbox itself, for the URLs it hands out.
    pub base: String,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            accounts: Vec::new(),
            keys: Vec::new(),
            sessions: HashMap::new(),
            intents: HashMap::new(),
            charges: HashMap::new(),
            refunds: HashMap::new(),
            endpoints: Vec::new(),
            events: Vec::new(),
            idem: HashMap::new(),
            admitted: HashMap::new(),
            rng: 0x5DEE_CE66_D1CE_4E5B ^ u64::from(std::process::id()),
            fault_rng: 1,
            faults: Faults::default(),
            stats: SandboxStats::default(),
            exchanges: VecDeque::new(),
            deliveries: Vec::new(),
            recording: true,
            down: false,
            offset_s: 0,
            held: false,
            held_queue: Vec::new(),
            retry_base: Duration::from_secs(1),
            max_attempts: 8,
            base: String::new(),
        }
    }
}

/// Japan Standard Time, for konbini deadlines (UTC+9, no daylight saving).
const JST_S: i64 = 9 * 3600;

/// 23:59:59 JST of the day `days` after the JST day of `now` (NOTES §1).
pub(crate) fn konbini_deadline(now: i64, days: i64) -> i64 {
    let day = (now + JST_S).div_euclid(86_400);
    (day + days + 1) * 86_400 - 1 - JST_S
}

impl Inner {
    pub fn now(&self) -> i64 {
        jiff::Timestamp::now().as_second() + self.offset_s
    }

    pub fn next(&mut self) -> u64 {
        crate::common::splitmix(&mut self.rng)
    }

    /// A Stripe-looking id: `prefix_` and 24 characters.
    pub fn id(&mut self, prefix: &str) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let tail: String = (0..24).map(|_| ALPHABET[(self.next() % 62) as usize] as char).collect();
        format!("{prefix}_{tail}")
    }

    pub fn digits(&mut self, n: usize) -> String {
        (0..n).map(|_| char::from(b'0' + (self.next() % 10) as u8)).collect()
    }

    pub fn fault_draw(&mut self) -> f64 {
        crate::common::fault_draw(&mut self.fault_rng)
    }

    pub fn account(&self, id: &str) -> Option<&SandboxAccount> {
        self.accounts.iter().find(|a| a.id == id)
    }

    /// Record an event and return it with the endpoints it goes to.
    pub fn emit(
        &mut self,
        account: &str,
        livemode: bool,
        kind: &str,
        object: Value,
        request: Option<(String, Option<String>)>,
    ) -> String {
        let id = self.id("evt");
        let targets = self
            .endpoints
            .iter()
            .filter(|e| e.account == account && (e.events.iter().any(|x| x == kind || x == "*")))
            .count() as i64;
        let created = self.now();
        self.events.push(Event {
            id: id.clone(),
            account: account.to_string(),
            livemode,
            kind: kind.to_string(),
            created,
            object,
            request,
            pending: targets,
        });
        id
    }

    pub fn event_json(&self, e: &Event) -> Value {
        json!({
            "id": e.id, "object": "event", "api_version": crate::stripe::API_VERSION, "created": e.created,
            "data": {"object": e.object}, "livemode": e.livemode, "pending_webhooks": e.pending,
            "request": e.request.as_ref().map(|(id, k)| json!({"id": id, "idempotency_key": k})),
            "type": e.kind,
        })
    }

    /// Time-driven changes: open sessions past `expires_at` expire, konbini vouchers past their
    /// deadline fail. Returns the events made.
    pub fn sweep(&mut self) -> Vec<String> {
        let now = self.now();
        let mut made = Vec::new();
        let mut expired: Vec<String> =
            self.sessions.values().filter(|s| s.status == "open" && s.expires_at < now).map(|s| s.id.clone()).collect();
        expired.sort();
        for id in expired {
            let s = self.sessions.get_mut(&id).expect("listed");
            s.status = "expired";
            let (account, live, pi) = (s.account.clone(), s.livemode, s.payment_intent.clone());
            if let Some(i) = self.intents.get_mut(&pi)
                && i.status != "succeeded"
            {
                i.status = "canceled";
                i.canceled_at = Some(now);
            }
            let obj = self.session_json(&id);
            made.push(self.emit(&account, live, "checkout.session.expired", obj, None));
        }
        let mut lapsed: Vec<String> = self
            .intents
            .values()
            .filter(|i| i.status == "requires_action" && i.konbini_expires_at.is_some_and(|t| t < now))
            .map(|i| i.id.clone())
            .collect();
        lapsed.sort();
        for id in lapsed {
            made.extend(self.konbini_fail(&id));
        }
        made
    }

    /// A konbini voucher ran out unpaid.
    pub fn konbini_fail(&mut self, pi: &str) -> Option<String> {
        let now = self.now();
        let i = self.intents.get_mut(pi).filter(|i| i.status == "requires_action")?;
        i.status = "canceled";
        i.canceled_at = Some(now);
        let session = i.session.clone();
        let (account, live) = (i.account.clone(), i.livemode);
        let obj = self.session_json(&session);
        Some(self.emit(&account, live, "checkout.session.async_payment_failed", obj, None))
    }

    /// The buyer paid: a charge, the PaymentIntent succeeded, the session paid.
    pub fn settle(&mut self, pi: &str, method: &str) -> Option<String> {
        let now = self.now();
        let charge_id = self.id("ch");
        let i = self.intents.get_mut(pi)?;
        i.status = "succeeded";
        i.method = Some(method.to_string());
        i.next_action_clear();
        i.charge = Some(charge_id.clone());
        i.last_error = None;
        let charge = Charge {
            id: charge_id.clone(),
            account: i.account.clone(),
            livemode: i.livemode,
            amount: i.amount,
            amount_refunded: 0,
            intent: i.id.clone(),
            metadata: i.metadata.clone(),
            method: method.to_string(),
            created: now,
            refunds: Vec::new(),
            email: i.email.clone(),
        };
        let session = i.session.clone();
        self.charges.insert(charge_id, charge);
        if let Some(s) = self.sessions.get_mut(&session) {
            s.status = "complete";
            s.payment_status = "paid";
        }
        Some(session)
    }

    /// A refund of `amount` (all that is left when `None`) of a PaymentIntent's charge.
    pub fn refund(
        &mut self,
        pi: &str,
        amount: Option<i64>,
        reason: Option<String>,
        metadata: Map<String, Value>,
    ) -> Result<String, (u16, &'static str, String)> {
        let now = self.now();
        let Some(i) = self.intents.get(pi) else {
            return Err((404, "resource_missing", format!("No such payment_intent: '{pi}'")));
        };
        let Some(ch) = i.charge.clone().filter(|_| i.status == "succeeded") else {
            return Err((
                400,
                "charge_not_refundable",
                format!("This PaymentIntent ({pi}) does not have a successful charge to refund."),
            ));
        };
        let c = self.charges.get(&ch).expect("charge of a succeeded intent");
        let left = c.amount - self.refunded_or_pending(&ch);
        let amount = amount.unwrap_or(left);
        if amount <= 0 || amount > left {
            return Err((
                400,
                "amount_too_large",
                format!("Refund amount (¥{amount}) is greater than unrefunded amount on charge (¥{left})"),
            ));
        }
        let konbini = c.method == "konbini";
        let email = c.email.clone();
        let (account, livemode) = (c.account.clone(), c.livemode);
        let id = self.id("re");
        let status = if konbini { "requires_action" } else { "succeeded" };
        self.refunds.insert(
            id.clone(),
            Refund {
                id: id.clone(),
                account: account.clone(),
                amount,
                charge: ch.clone(),
                intent: pi.to_string(),
                status,
                reason,
                metadata,
                created: now,
                action_email: konbini.then(|| email.unwrap_or_else(|| "buyer@example.com".into())),
            },
        );
        let c = self.charges.get_mut(&ch).expect("exists");
        c.refunds.insert(0, id.clone());
        if !konbini {
            c.amount_refunded += amount;
        }
        let obj = self.charge_json(&ch);
        if konbini {
            self.emit(&account, livemode, "charge.refund.updated", self.refund_json(&id), None);
        } else {
            self.emit(&account, livemode, "charge.refunded", obj, None);
        }
        Ok(id)
    }

    fn refunded_or_pending(&self, charge: &str) -> i64 {
        self.refunds
            .values()
            .filter(|r| r.charge == charge && matches!(r.status, "succeeded" | "pending" | "requires_action"))
            .map(|r| r.amount)
            .sum()
    }

    /// A konbini buyer gave their bank details: the waiting refund goes through.
    pub fn complete_refund(&mut self, re: &str) -> bool {
        let Some(r) = self.refunds.get_mut(re).filter(|r| r.status == "requires_action") else { return false };
        r.status = "succeeded";
        let (ch, amount, account) = (r.charge.clone(), r.amount, r.account.clone());
        let Some(c) = self.charges.get_mut(&ch) else { return false };
        c.amount_refunded += amount;
        let live = c.livemode;
        let refund = self.refund_json(re);
        self.emit(&account, live, "charge.refund.updated", refund, None);
        let charge = self.charge_json(&ch);
        self.emit(&account, live, "charge.refunded", charge, None);
        true
    }

    // ---- objects as Stripe answers them -----------------------------------------------------

    pub fn session_json(&self, id: &str) -> Value {
        let s = &self.sessions[id];
        let mut pmo = json!({});
        if let Some(d) = s.konbini_days {
            pmo = json!({"konbini": {"expires_after_days": d}});
        }
        json!({
            "id": s.id, "object": "checkout.session",
            "after_expiration": null, "allow_promotion_codes": null,
            "amount_subtotal": s.amount_total, "amount_total": s.amount_total,
            "automatic_tax": {"enabled": false, "status": null},
            "billing_address_collection": null, "cancel_url": s.cancel_url,
            "client_reference_id": s.client_reference_id, "consent": null, "consent_collection": null,
            "currency": "jpy", "customer": null, "customer_creation": "if_required",
            "customer_details": s.customer_email.as_ref().map(|e| json!({"email": e, "name": null, "phone": null, "address": null, "tax_exempt": "none", "tax_ids": []})),
            "customer_email": s.customer_email, "expires_at": s.expires_at, "livemode": s.livemode,
            "locale": "ja", "metadata": s.metadata, "mode": "payment",
            "payment_intent": s.payment_intent, "payment_link": null,
            "payment_method_options": pmo, "payment_method_types": s.methods,
            "payment_status": s.payment_status, "phone_number_collection": {"enabled": false},
            "recovered_from": null, "setup_intent": null, "shipping": null,
            "shipping_address_collection": null, "shipping_options": [], "shipping_rate": null,
            "status": s.status, "submit_type": null, "subscription": null,
            "success_url": s.success_url, "tax_id_collection": {"enabled": false},
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "url": (s.status == "open").then(|| format!("{}/c/pay/{}", self.base, s.id)),
        })
    }

    pub fn intent_json(&self, id: &str) -> Value {
        let i = &self.intents[id];
        let charges: Vec<Value> = i.charge.iter().map(|c| self.charge_json(c)).collect();
        let next_action = match (i.status, i.konbini_expires_at, &i.konbini_codes) {
            ("requires_action", Some(exp), Some((code, confirm))) => {
                let store = |c: bool| json!({"payment_code": code, "confirmation_number": if c { json!(confirm) } else { Value::Null }});
                json!({
                    "type": "konbini_display_details",
                    "konbini_display_details": {
                        "expires_at": exp,
                        "hosted_voucher_url": format!("{}/v/{}", self.base, i.id),
                        "stores": {"familymart": store(true), "lawson": store(true), "ministop": store(true), "seicomart": store(true)},
                    },
                })
            }
            _ => Value::Null,
        };
        json!({
            "id": i.id, "object": "payment_intent", "amount": i.amount,
            "amount_capturable": 0, "amount_received": if i.status == "succeeded" { i.amount } else { 0 },
            "application": null, "application_fee_amount": null, "automatic_payment_methods": null,
            "canceled_at": i.canceled_at,
            "cancellation_reason": i.canceled_at.map(|_| "abandoned"),
            "capture_method": "automatic",
            "charges": {"object": "list", "data": charges, "has_more": false, "url": format!("/v1/charges?payment_intent={}", i.id)},
            "client_secret": format!("{}_secret_{}", i.id, &i.id[3..13]),
            "confirmation_method": "automatic", "created": i.created, "currency": "jpy",
            "customer": null, "description": null, "invoice": null,
            "last_payment_error": i.last_error.as_ref().map(|(code, msg)| json!({"type": "card_error", "code": code, "decline_code": "generic_decline", "message": msg})),
            "livemode": i.livemode, "metadata": i.metadata, "next_action": next_action,
            "on_behalf_of": null, "payment_method": i.method.as_ref().map(|_| format!("pm_{}", &i.id[3..])),
            "payment_method_types": i.methods, "processing": null, "receipt_email": i.email,
            "review": null, "setup_future_usage": null, "shipping": null, "statement_descriptor": null,
            "statement_descriptor_suffix": null, "status": i.status, "transfer_data": null, "transfer_group": null,
        })
    }

    pub fn charge_json(&self, id: &str) -> Value {
        let c = &self.charges[id];
        let refunds: Vec<Value> = c.refunds.iter().map(|r| self.refund_json(r)).collect();
        let details = if c.method == "konbini" {
            json!({"type": "konbini", "konbini": {"store": {"chain": "familymart"}}})
        } else {
            json!({"type": "card", "card": {"brand": "visa", "country": "JP", "exp_month": 12, "exp_year": 2030, "funding": "credit", "last4": "4242", "network": "visa"}})
        };
        json!({
            "id": c.id, "object": "charge", "amount": c.amount, "amount_captured": c.amount,
            "amount_refunded": c.amount_refunded, "application": null, "application_fee": null,
            "application_fee_amount": null, "balance_transaction": format!("txn_{}", &c.id[3..]),
            "billing_details": {"address": null, "email": c.email, "name": null, "phone": null},
            "calculated_statement_descriptor": "TSUNAGU", "captured": true, "created": c.created,
            "currency": "jpy", "customer": null, "description": null, "disputed": false,
            "failure_balance_transaction": null, "failure_code": null, "failure_message": null,
            "fraud_details": {}, "invoice": null, "livemode": c.livemode, "metadata": c.metadata,
            "on_behalf_of": null, "order": null,
            "outcome": {"network_status": "approved_by_network", "reason": null, "risk_level": "normal", "risk_score": 20, "seller_message": "Payment complete.", "type": "authorized"},
            "paid": true, "payment_intent": c.intent, "payment_method": format!("pm_{}", &c.intent[3..]),
            "payment_method_details": details, "receipt_email": c.email, "receipt_number": null,
            "receipt_url": null, "refunded": c.amount_refunded >= c.amount,
            "refunds": {"object": "list", "data": refunds, "has_more": false, "url": format!("/v1/charges/{}/refunds", c.id)},
            "review": null, "shipping": null, "source_transfer": null, "statement_descriptor": null,
            "statement_descriptor_suffix": null, "status": "succeeded", "transfer_data": null, "transfer_group": null,
        })
    }

    pub fn refund_json(&self, id: &str) -> Value {
        let r = &self.refunds[id];
        let mut v = json!({
            "id": r.id, "object": "refund", "amount": r.amount, "balance_transaction": null,
            "charge": r.charge, "created": r.created, "currency": "jpy", "metadata": r.metadata,
            "payment_intent": r.intent, "reason": r.reason, "receipt_number": null,
            "source_transfer_reversal": null, "status": r.status, "transfer_reversal": null,
        });
        if let (Some(email), "requires_action") = (&r.action_email, r.status) {
            v["next_action"] = json!({
                "type": "display_details",
                "display_details": {"email_sent": {"email_sent_at": r.created, "email_sent_to": email}, "expires_at": r.created + 45 * 86_400},
            });
        }
        v
    }

    pub fn endpoint_json(&self, e: &Endpoint, with_secret: bool) -> Value {
        let mut v = json!({
            "id": e.id, "object": "webhook_endpoint", "api_version": e.api_version, "application": null,
            "created": e.created, "description": e.description, "enabled_events": e.events,
            "livemode": e.livemode, "metadata": {}, "status": "enabled", "url": e.url,
        });
        if with_secret {
            v["secret"] = json!(e.secret);
        }
        v
    }
}

impl Intent {
    fn next_action_clear(&mut self) {
        self.konbini_expires_at = None;
        self.konbini_codes = None;
    }
}

pub(crate) const API_VERSION: &str = "2020-08-27";

/// Shared handle: tests configure it and read what happened.
#[derive(Clone, Default)]
pub struct StripeSandbox {
    pub(crate) inner: Arc<Mutex<Inner>>,
    http: Arc<std::sync::OnceLock<reqwest::Client>>,
}

/// A payment as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentView {
    pub payment_intent: String,
    pub account: String,
    pub amount: i64,
    pub status: String,
    pub method: Option<String>,
    pub amount_refunded: i64,
    pub metadata: HashMap<String, String>,
    pub konbini_expires_at: Option<i64>,
}

/// A refund as the sandbox holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundView {
    pub id: String,
    pub payment_intent: String,
    pub amount: i64,
    pub status: String,
}

impl StripeSandbox {
    pub fn new() -> StripeSandbox {
        StripeSandbox::default()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sandbox's own base URL (for the checkout and voucher URLs it hands out).
    pub fn set_base(&self, base: &str) {
        self.lock().base = base.trim_end_matches('/').to_string();
    }

    /// Add an account; returns its test-mode secret key.
    pub fn add_account(&self, account: SandboxAccount) -> String {
        let mut g = self.lock();
        let secret = format!("sk_test_{}", g.id("k").trim_start_matches("k_"));
        g.keys.push(Key { secret: secret.clone(), account: account.id.clone(), livemode: false, permissions: None });
        g.accounts.push(account);
        secret
    }

    /// A secret key chosen by the caller (the demo's stays the same from one start to the next).
    pub fn add_key(&self, account_id: &str, secret: &str) {
        let livemode = secret.starts_with("sk_live_");
        self.lock().keys.push(Key { secret: secret.into(), account: account_id.into(), livemode, permissions: None });
    }

    /// A live-mode secret key of an account.
    pub fn add_live_key(&self, account_id: &str) -> String {
        let mut g = self.lock();
        let secret = format!("sk_live_{}", g.id("k").trim_start_matches("k_"));
        g.keys.push(Key { secret: secret.clone(), account: account_id.into(), livemode: true, permissions: None });
        secret
    }

    /// A test-mode restricted key with Stripe's permission names (`rak_checkout_session_write`,
    /// `rak_refund_write`, `rak_webhook_write`, `rak_payment_intent_read`, `rak_charge_read`,
    /// `rak_event_read`, `rak_account_read`).
    pub fn add_restricted_key(&self, account_id: &str, permissions: &[&str]) -> String {
        let mut g = self.lock();
        let secret = format!("rk_test_{}", g.id("k").trim_start_matches("k_"));
        g.keys.push(Key {
            secret: secret.clone(),
            account: account_id.into(),
            livemode: false,
            permissions: Some(permissions.iter().map(|p| p.to_string()).collect()),
        });
        secret
    }

    /// Roll (revoke) a key, as in Stripe's dashboard.
    pub fn revoke_key(&self, secret: &str) {
        self.lock().keys.retain(|k| k.secret != secret);
    }

    pub fn set_faults(&self, faults: Faults) {
        let mut g = self.lock();
        g.fault_rng = crate::common::fault_seed(faults.seed);
        g.faults = faults;
    }

    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// Webhook retries: the first pause (doubled per attempt) and the attempts per event.
    pub fn set_webhook_retry(&self, base: Duration, max_attempts: u32) {
        let mut g = self.lock();
        g.retry_base = base;
        g.max_attempts = max_attempts;
    }

    /// Keep deliveries back until [`StripeSandbox::release_webhooks`].
    pub fn hold_webhooks(&self) {
        self.lock().held = true;
    }

    /// Deliver what was kept back, in the order the events were made.
    pub fn release_webhooks(&self) {
        self.release(false);
    }

    /// Deliver what was kept back, newest first (events out of order), one after the other.
    pub fn release_webhooks_newest_first(&self) {
        self.release(true);
    }

    fn release(&self, newest_first: bool) {
        let mut queue = {
            let mut g = self.lock();
            g.held = false;
            std::mem::take(&mut g.held_queue)
        };
        if newest_first {
            queue.reverse();
            let sb = self.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    for (event, endpoint) in queue {
                        if !sb.deliver_once(&event, &endpoint).await {
                            sb.spawn_delivery(event, endpoint, 1);
                        }
                    }
                });
            }
            return;
        }
        for (event, endpoint) in queue {
            self.spawn_delivery(event, endpoint, 0);
        }
    }

    /// Throw away what was kept back: those webhooks never arrive.
    pub fn drop_held_webhooks(&self) -> usize {
        let mut g = self.lock();
        g.held = false;
        std::mem::take(&mut g.held_queue).len()
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

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.lock().deliveries.clone()
    }

    pub fn stats(&self) -> SandboxStats {
        self.lock().stats.clone()
    }

    /// The sandbox clock, Unix seconds.
    pub fn now(&self) -> i64 {
        self.lock().now()
    }

    /// Move the clock forward; what is then due (expired sessions, lapsed vouchers) happens.
    pub fn advance(&self, by: Duration) {
        let made = {
            let mut g = self.lock();
            g.offset_s += by.as_secs() as i64;
            g.sweep()
        };
        self.deliver_all(made);
    }

    /// The buyer pays a session's card payment (what the hosted page does with 4242…).
    pub fn pay_card(&self, session: &str) -> Result<(), String> {
        page::pay(self, session, "card", "4242424242424242", None).map(|_| ())
    }

    /// The buyer takes a konbini voucher for a session; returns the PaymentIntent.
    pub fn take_voucher(&self, session: &str, email: &str) -> Result<String, String> {
        page::pay(self, session, "konbini", "", Some(email))?;
        Ok(self.lock().sessions[session].payment_intent.clone())
    }

    /// The buyer pays the voucher at the store.
    pub fn paid_at_store(&self, payment_intent: &str) -> bool {
        page::konbini_paid(self, payment_intent)
    }

    /// The voucher runs out unpaid, now.
    pub fn let_voucher_expire(&self, payment_intent: &str) -> bool {
        let made = self.lock().konbini_fail(payment_intent);
        let ok = made.is_some();
        self.deliver_all(made.into_iter().collect());
        ok
    }

    /// A refund made in Stripe's dashboard. Returns the refund's id.
    pub fn refund_in_dashboard(&self, payment_intent: &str, amount: Option<i64>) -> Result<String, String> {
        let before = self.lock().events.len();
        let r = self.lock().refund(payment_intent, amount, Some("requested_by_customer".into()), Map::new());
        let made: Vec<String> = self.lock().events[before..].iter().map(|e| e.id.clone()).collect();
        self.deliver_all(made);
        r.map_err(|e| e.2)
    }

    /// A konbini buyer answered Stripe's mail with their bank details.
    pub fn complete_refund(&self, refund: &str) -> bool {
        let before = self.lock().events.len();
        let ok = self.lock().complete_refund(refund);
        let made: Vec<String> = self.lock().events[before..].iter().map(|e| e.id.clone()).collect();
        self.deliver_all(made);
        ok
    }

    pub fn payments(&self) -> Vec<PaymentView> {
        let g = self.lock();
        let mut out: Vec<(i64, PaymentView)> = g
            .intents
            .values()
            .map(|i| {
                let refunded = i.charge.as_ref().and_then(|c| g.charges.get(c)).map_or(0, |c| c.amount_refunded);
                (
                    i.created,
                    PaymentView {
                        payment_intent: i.id.clone(),
                        account: i.account.clone(),
                        amount: i.amount,
                        status: i.status.to_string(),
                        method: i.method.clone(),
                        amount_refunded: refunded,
                        metadata: i
                            .metadata
                            .iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect(),
                        konbini_expires_at: i.konbini_expires_at,
                    },
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.payment_intent.cmp(&b.1.payment_intent)));
        out.into_iter().map(|(_, p)| p).collect()
    }

    pub fn refunds(&self) -> Vec<RefundView> {
        let g = self.lock();
        let mut out: Vec<RefundView> = g
            .refunds
            .values()
            .map(|r| RefundView {
                id: r.id.clone(),
                payment_intent: r.intent.clone(),
                amount: r.amount,
                status: r.status.to_string(),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// The session's status and payment status.
    pub fn session_state(&self, session: &str) -> Option<(String, String)> {
        self.lock().sessions.get(session).map(|s| (s.status.to_string(), s.payment_status.to_string()))
    }

    /// Every session, as `(id, client_reference_id)`.
    /// The PaymentIntent of a checkout session.
    pub fn payment_intent_of(&self, session: &str) -> Option<String> {
        self.lock().sessions.get(session).map(|s| s.payment_intent.clone())
    }

    pub fn sessions(&self) -> Vec<(String, Option<String>)> {
        let mut v: Vec<_> =
            self.lock().sessions.values().map(|s| (s.id.clone(), s.client_reference_id.clone())).collect();
        v.sort();
        v
    }

    /// Webhook endpoints as `(account, url, enabled events)`.
    pub fn endpoints(&self) -> Vec<(String, String, Vec<String>)> {
        self.lock().endpoints.iter().map(|e| (e.account.clone(), e.url.clone(), e.events.clone())).collect()
    }

    /// Event ids and types of an account, oldest first.
    pub fn events_of(&self, account: &str) -> Vec<(String, String)> {
        self.lock().events.iter().filter(|e| e.account == account).map(|e| (e.id.clone(), e.kind.clone())).collect()
    }

    /// The signed body and header of an event as it would be delivered to an endpoint (for
    /// tests that post it themselves).
    pub fn signed_event(&self, event_id: &str, endpoint_url: &str) -> Option<(String, String)> {
        let g = self.lock();
        let e = g.events.iter().find(|e| e.id == event_id)?;
        let ep = g.endpoints.iter().find(|x| x.url == endpoint_url && x.account == e.account)?;
        let body = g.event_json(e).to_string();
        let t = g.now();
        Some((body.clone(), sign_header(&ep.secret, t, &body)))
    }

    /// Post each event to its endpoints (in the background).
    pub(crate) fn deliver_all(&self, events: Vec<String>) {
        for event in events {
            let targets: Vec<String> = {
                let g = self.lock();
                let Some(e) = g.events.iter().find(|e| e.id == event) else { continue };
                g.endpoints
                    .iter()
                    .filter(|x| x.account == e.account && x.events.iter().any(|k| *k == e.kind || k == "*"))
                    .map(|x| x.id.clone())
                    .collect()
            };
            for endpoint in targets {
                let mut g = self.lock();
                if g.held {
                    g.held_queue.push((event.clone(), endpoint));
                    continue;
                }
                let lost = g.faults.webhook_lost > 0.0 && g.fault_draw() < g.faults.webhook_lost;
                let twice = g.faults.webhook_duplicate > 0.0 && g.fault_draw() < g.faults.webhook_duplicate;
                drop(g);
                if lost {
                    continue;
                }
                self.spawn_delivery(event.clone(), endpoint.clone(), 0);
                if twice {
                    self.spawn_delivery(event.clone(), endpoint, 0);
                }
            }
        }
    }

    fn client(&self) -> reqwest::Client {
        self.http
            .get_or_init(|| {
                let _ = rustls::crypto::ring::default_provider().install_default();
                reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client")
            })
            .clone()
    }

    fn spawn_delivery(&self, event: String, endpoint: String, attempt: u32) {
        let sb = self.clone();
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        rt.spawn(async move {
            let (jitter, pause) = {
                let mut g = sb.lock();
                let j = g.faults.webhook_jitter;
                let d = g.fault_draw();
                (j.mul_f64(d), if attempt == 0 { Duration::ZERO } else { g.retry_base * (1 << (attempt - 1).min(10)) })
            };
            tokio::time::sleep(jitter + pause).await;
            let ok = sb.deliver_once(&event, &endpoint).await;
            let again = !ok && attempt + 1 < sb.lock().max_attempts;
            if again {
                sb.spawn_delivery(event, endpoint, attempt + 1);
            }
        });
    }

    /// One delivery attempt, recorded; true when the endpoint answered 2xx. A failed one is
    /// retried with backoff like any other.
    async fn deliver_once(&self, event: &str, endpoint: &str) -> bool {
        let Some((url, body, header, kind)) = ({
            let g = self.lock();
            let e = g.events.iter().find(|e| e.id == event);
            let ep = g.endpoints.iter().find(|x| x.id == endpoint);
            match (e, ep) {
                (Some(e), Some(ep)) => {
                    let body = g.event_json(e).to_string();
                    let header = sign_header(&ep.secret, g.now(), &body);
                    Some((ep.url.clone(), body, header, e.kind.clone()))
                }
                _ => None,
            }
        }) else {
            return true;
        };
        let status = self
            .client()
            .post(&url)
            .header("content-type", "application/json; charset=utf-8")
            .header("user-agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
            .header("stripe-signature", header)
            .body(body.clone())
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16());
        let mut g = self.lock();
        g.deliveries.push(Delivery {
            event_id: event.to_string(),
            event_type: kind,
            endpoint_id: endpoint.to_string(),
            url,
            body,
            status,
        });
        let ok = status.is_some_and(|s| (200..300).contains(&s));
        if ok && let Some(e) = g.events.iter_mut().find(|e| e.id == event) {
            e.pending = (e.pending - 1).max(0);
        }
        ok
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/{*rest}", any(api::handle))
            .route("/", get(page::dashboard))
            .route("/dashboard", get(page::dashboard))
            .route("/dashboard/refund", post(page::dashboard_refund))
            .route("/dashboard/refunds/{id}/complete", post(page::dashboard_complete_refund))
            .route("/c/pay/{id}", get(page::checkout).post(page::checkout_submit))
            .route("/c/pay/{id}/cancel", get(page::checkout_cancel))
            .route("/v/{id}", get(page::voucher))
            .route("/v/{id}/paid", post(page::voucher_paid))
            .route("/v/{id}/expire", post(page::voucher_expire))
            .with_state(self.clone())
    }
}

/// `Stripe-Signature` for `body` signed at `t` (NOTES §2).
pub(crate) fn sign_header(secret: &str, t: i64, body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{t}.{body}").as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn konbini_deadline_is_the_end_of_the_jst_day() {
        // 2026-12-03 10:00 JST = 01:00 UTC; 3 days → 2026-12-06 23:59:59 JST = 14:59:59 UTC.
        let now = jiff::Timestamp::from_second(1_796_259_600).unwrap();
        assert_eq!(now.to_string(), "2026-12-03T01:00:00Z");
        let d = jiff::Timestamp::from_second(konbini_deadline(now.as_second(), 3)).unwrap();
        assert_eq!(d.to_string(), "2026-12-06T14:59:59Z");
        // 23:30 JST the same day (14:30 UTC) is still 2026-12-03 in Japan.
        let late = konbini_deadline(1_796_259_600 + 13 * 3600 + 1800, 3);
        assert_eq!(late, d.as_second());
    }
}
