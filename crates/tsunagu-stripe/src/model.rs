//! The parts of Stripe's objects Tsunagu reads (API version 2020-08-27). Fields Stripe may leave
//! out or set to `null` are optional; the contract tests check the whole objects against the
//! official schema.

use std::collections::HashMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct List<T> {
    pub data: Vec<T>,
    #[serde(default)]
    pub has_more: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct CheckoutSession {
    pub id: String,
    /// Where to send the buyer (only while the session is open).
    pub url: Option<String>,
    /// `open`, `complete` or `expired`.
    pub status: Option<String>,
    /// `paid`, `unpaid` or `no_payment_required`.
    pub payment_status: String,
    pub payment_intent: Option<String>,
    pub client_reference_id: Option<String>,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
    pub expires_at: i64,
    #[serde(default)]
    pub livemode: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PaymentIntent {
    pub id: String,
    /// `requires_payment_method`, `requires_action` (a konbini voucher waiting), `processing`,
    /// `succeeded`, `canceled`, …
    pub status: String,
    pub amount: i64,
    #[serde(default)]
    pub amount_received: i64,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
    pub next_action: Option<NextAction>,
    #[serde(default)]
    pub payment_method_types: Vec<String>,
    pub charges: Option<List<Charge>>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct NextAction {
    #[serde(rename = "type")]
    pub kind: String,
    pub konbini_display_details: Option<KonbiniDetails>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct KonbiniDetails {
    /// Unix seconds.
    pub expires_at: i64,
    pub hosted_voucher_url: Option<String>,
    #[serde(default)]
    pub stores: HashMap<String, Option<KonbiniStore>>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct KonbiniStore {
    pub payment_code: String,
    pub confirmation_number: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Charge {
    pub id: String,
    pub amount: i64,
    #[serde(default)]
    pub amount_refunded: i64,
    #[serde(default)]
    pub refunded: bool,
    #[serde(default)]
    pub paid: bool,
    pub status: String,
    pub payment_intent: Option<String>,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
    pub refunds: Option<List<Refund>>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Refund {
    pub id: String,
    pub amount: i64,
    /// `pending`, `requires_action` (konbini: waiting for the buyer's bank details),
    /// `succeeded`, `failed`, `canceled`.
    pub status: Option<String>,
    pub payment_intent: Option<String>,
    pub charge: Option<String>,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
    pub created: i64,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct WebhookEndpoint {
    pub id: String,
    pub url: String,
    #[serde(default)]
    pub enabled_events: Vec<String>,
    pub api_version: Option<String>,
    /// Only in the answer that creates the endpoint (NOTES §0).
    pub secret: Option<String>,
    pub status: String,
    #[serde(default)]
    pub livemode: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created: i64,
    #[serde(default)]
    pub livemode: bool,
    pub api_version: Option<String>,
    pub data: EventData,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct EventData {
    pub object: serde_json::Value,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
pub struct Account {
    pub id: String,
    pub email: Option<String>,
    pub country: Option<String>,
    pub default_currency: Option<String>,
    #[serde(default)]
    pub charges_enabled: bool,
    /// `card_payments`, `konbini_payments`, … → `active`, `inactive` or `pending`.
    #[serde(default)]
    pub capabilities: HashMap<String, String>,
    pub business_profile: Option<BusinessProfile>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
pub struct BusinessProfile {
    pub name: Option<String>,
}

impl Account {
    /// Whether a payment method's capability (`card` → `card_payments`) is active.
    pub fn can_take(&self, method: &str) -> bool {
        self.capabilities.get(&format!("{method}_payments")).is_some_and(|s| s == "active")
    }
}
