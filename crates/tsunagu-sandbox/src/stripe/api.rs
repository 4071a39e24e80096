//! `/v1`: what Stripe answers, in its shapes and with its rules (NOTES §1–§4).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{Endpoint, Exchange, Inner, Intent, Session, StripeSandbox, konbini_deadline};

pub(crate) struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(String, String)>,
}

fn ok(body: Value) -> Answer {
    Answer { status: 200, body, headers: Vec::new() }
}

pub(crate) fn error(status: u16, kind: &str, code: Option<&str>, param: Option<&str>, message: &str) -> Answer {
    let mut e = json!({"type": kind, "message": message});
    if let Some(c) = code {
        e["code"] = json!(c);
        e["doc_url"] = json!(format!("https://stripe.com/docs/error-codes/{}", c.replace('_', "-")));
    }
    if let Some(p) = param {
        e["param"] = json!(p);
    }
    Answer { status, body: json!({"error": e}), headers: Vec::new() }
}

fn invalid(param: &str, message: &str) -> Answer {
    error(400, "invalid_request_error", Some("parameter_invalid"), Some(param), message)
}

fn missing(param: &str) -> Answer {
    error(
        400,
        "invalid_request_error",
        Some("parameter_missing"),
        Some(param),
        &format!("Missing required param: {param}."),
    )
}

fn not_found(kind: &str, id: &str, param: &str) -> Answer {
    error(404, "invalid_request_error", Some("resource_missing"), Some(param), &format!("No such {kind}: '{id}'"))
}

/// `a[b][0][c]=v` → `{"a": {"b": [{"c": "v"}]}}`; `a[]=x&a[]=y` → `{"a": ["x", "y"]}`.
pub(crate) fn parse_form(body: &str) -> Result<Value, String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(body).map_err(|e| e.to_string())?;
    let mut root = Value::Object(Map::new());
    for (k, v) in pairs {
        let (head, rest) = match k.find('[') {
            Some(i) => (&k[..i], &k[i..]),
            None => (k.as_str(), ""),
        };
        let mut keys = vec![head.to_string()];
        let mut r = rest;
        while let Some(stripped) = r.strip_prefix('[') {
            let end = stripped.find(']').ok_or_else(|| format!("malformed key {k}"))?;
            keys.push(stripped[..end].to_string());
            r = &stripped[end + 1..];
        }
        if !r.is_empty() {
            return Err(format!("malformed key {k}"));
        }
        let mut cur = &mut root;
        for (i, key) in keys.iter().enumerate() {
            let last = i + 1 == keys.len();
            let next_is_index = keys.get(i + 1).is_some_and(|n| n.is_empty() || n.parse::<usize>().is_ok());
            let fresh = if next_is_index { Value::Array(Vec::new()) } else { Value::Object(Map::new()) };
            cur = match cur {
                Value::Object(m) => {
                    if last {
                        m.insert(key.clone(), Value::String(v.clone()));
                        break;
                    }
                    m.entry(key.clone()).or_insert(fresh)
                }
                Value::Array(a) => {
                    let idx = if key.is_empty() { a.len() } else { key.parse::<usize>().map_err(|e| e.to_string())? };
                    if last {
                        if idx >= a.len() {
                            a.resize(idx + 1, Value::Null);
                        }
                        a[idx] = Value::String(v.clone());
                        break;
                    }
                    if idx >= a.len() {
                        a.resize(idx + 1, Value::Null);
                    }
                    if a[idx].is_null() {
                        a[idx] = fresh;
                    }
                    &mut a[idx]
                }
                _ => return Err(format!("{k} mixes a value and a nested key")),
            };
        }
    }
    Ok(root)
}

fn int(v: &Value, param: &str) -> Result<Option<i64>, Answer> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => s.parse::<i64>().map(Some).map_err(|_| invalid(param, &format!("Invalid integer: {s}"))),
        _ => Err(invalid(param, "Invalid integer")),
    }
}

fn string(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn unknown_params(p: &Value, allowed: &[&str]) -> Option<Answer> {
    let m = p.as_object()?;
    let bad = m.keys().find(|k| !allowed.contains(&k.as_str()))?;
    Some(error(
        400,
        "invalid_request_error",
        Some("parameter_unknown"),
        Some(bad),
        &format!("Received unknown parameter: {bad}"),
    ))
}

/// Which permission of a restricted key each call needs, as Stripe names them.
fn permission(method: &Method, segs: &[&str]) -> &'static str {
    let write = *method != Method::GET;
    match (segs.first().copied().unwrap_or(""), write) {
        ("checkout", true) => "rak_checkout_session_write",
        ("checkout", false) => "rak_checkout_session_read",
        ("refunds", true) => "rak_refund_write",
        ("refunds", false) => "rak_refund_read",
        ("webhook_endpoints", true) => "rak_webhook_write",
        ("webhook_endpoints", false) => "rak_webhook_read",
        ("payment_intents", _) => "rak_payment_intent_read",
        ("charges", _) => "rak_charge_read",
        ("events", _) => "rak_event_read",
        ("account", _) => "rak_account_read",
        _ => "rak_unknown",
    }
}

/// Whether a held permission covers `needed` (write implies read).
fn covers(held: &[String], needed: &str) -> bool {
    held.iter().any(|h| h == needed || (needed.ends_with("_read") && *h == needed.replace("_read", "_write")))
}

pub(crate) async fn handle(
    AxumState(sb): AxumState<StripeSandbox>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_body = String::from_utf8_lossy(&body).into_owned();
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let (ans, hold, made) = {
        let mut g = sb.lock();
        let before = g.events.len();
        let (ans, hold) = process(&mut g, &method, &path, &query, &headers, &request_body);
        let made: Vec<String> = g.events[before..].iter().map(|e| e.id.clone()).collect();
        (ans, hold, made)
    };
    sb.deliver_all(made);
    let text = ans.body.to_string();
    let mut resp_headers = ans.headers.clone();
    resp_headers.push(("Content-Type".into(), "application/json".into()));
    resp_headers.push(("Stripe-Version".into(), super::API_VERSION.into()));
    {
        let mut g = sb.lock();
        let req_id = g.id("req");
        resp_headers.push(("Request-Id".into(), req_id));
        let recording = g.recording;
        crate::common::record(
            &mut g.exchanges,
            recording,
            Exchange {
                method: method.as_str().to_string(),
                path,
                query,
                status: ans.status,
                request_body,
                response_body: text.clone(),
                headers: headers
                    .iter()
                    .filter(|(k, _)| *k != "authorization")
                    .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.to_string(), v.to_string())))
                    .collect(),
            },
        );
    }
    if let Some(hold) = hold {
        tokio::time::sleep(hold).await;
    }
    let mut resp =
        (StatusCode::from_u16(ans.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), text).into_response();
    for (k, v) in resp_headers {
        if let (Ok(k), Ok(v)) =
            (axum::http::HeaderName::try_from(k.as_str()), axum::http::HeaderValue::from_str(v.as_str()))
        {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

/// Admit a request under the account's per-second limit, or say it is over.
fn admit(g: &mut Inner, account: &str, livemode: bool, write: bool) -> bool {
    let now = jiff::Timestamp::now().as_millisecond();
    let (key, max) = match (livemode, write) {
        (false, _) => (format!("{account}:test"), 25),
        (true, true) => (format!("{account}:write"), 100),
        (true, false) => (format!("{account}:read"), 100),
    };
    let q = g.admitted.entry(key).or_default();
    while q.front().is_some_and(|t| *t <= now - 1000) {
        q.pop_front();
    }
    if q.len() >= max {
        return false;
    }
    q.push_back(now);
    let n = q.len() as u32;
    let m = g.stats.max_in_any_second.entry(account.to_string()).or_default();
    *m = (*m).max(n);
    true
}

fn process(
    g: &mut Inner,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &str,
) -> (Answer, Option<Duration>) {
    g.stats.requests += 1;
    if g.down {
        return (error(503, "api_error", None, None, "Stripe is temporarily unavailable."), None);
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .trim()
        .to_string();
    let Some(key) = g.keys.iter().find(|k| k.secret == bearer).cloned() else {
        let shown = if bearer.len() > 12 {
            format!("{}****{}", &bearer[..8], &bearer[bearer.len() - 4..])
        } else {
            "****".into()
        };
        let msg = if bearer.is_empty() {
            "You did not provide an API key.".to_string()
        } else {
            format!("Invalid API Key provided: {shown}")
        };
        return (error(401, "invalid_request_error", None, None, &msg), None);
    };
    let write = *method != Method::GET;
    if !admit(g, &key.account, key.livemode, write) {
        g.stats.rate_429 += 1;
        return (
            error(
                429,
                "invalid_request_error",
                Some("rate_limit"),
                None,
                "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.",
            ),
            None,
        );
    }
    let f = g.faults.clone();
    if f.rate_429 > 0.0 && g.fault_draw() < f.rate_429 {
        g.stats.injected_429 += 1;
        return (
            error(429, "invalid_request_error", Some("rate_limit"), None, "Too many requests hit the API too quickly."),
            None,
        );
    }
    if f.rate_500 > 0.0 && g.fault_draw() < f.rate_500 {
        g.stats.injected_500 += 1;
        return (error(500, "api_error", None, None, "An unknown error occurred."), None);
    }
    let hold = (f.rate_timeout > 0.0 && g.fault_draw() < f.rate_timeout).then(|| {
        g.stats.injected_timeouts += 1;
        f.timeout_hold
    });
    let made = g.sweep();
    let _ = made; // delivered by the caller with the rest of this request's events
    let Some(rest) = path.strip_prefix("/v1/") else {
        return (error(404, "invalid_request_error", None, None, "Unrecognized request URL."), hold);
    };
    let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    if let Some(perms) = &key.permissions {
        let needed = permission(method, &segs);
        if !covers(perms, needed) {
            let msg = format!(
                "The provided key '{}' does not have the required permissions for this endpoint on account '{}'. Having the '{needed}' permission would allow this request to continue.",
                crate::stripe::api::masked(&key.secret),
                key.account
            );
            return (error(403, "invalid_request_error", None, None, &msg), hold);
        }
    }
    let params = if method == Method::GET || method == Method::DELETE { parse_form(query) } else { parse_form(body) };
    let params = match params {
        Ok(p) => p,
        Err(e) => return (error(400, "invalid_request_error", None, None, &format!("Invalid request: {e}")), hold),
    };
    let idem = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    if let Some(k) = &idem
        && *method == Method::POST
    {
        if k.len() > 255 {
            return (invalid("Idempotency-Key", "Idempotency keys can be at most 255 characters long."), hold);
        }
        let fp = format!("{method} {path} {params}");
        if let Some(prev) = g.idem.get(&(key.account.clone(), k.clone())) {
            if prev.fingerprint != fp {
                let msg = format!(
                    "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{k}' if you meant to execute a different request."
                );
                return (error(400, "idempotency_error", None, None, &msg), hold);
            }
            g.stats.idempotent_replays += 1;
            let mut a = Answer { status: prev.status, body: prev.body.clone(), headers: Vec::new() };
            a.headers.push(("Idempotent-Replayed".into(), "true".into()));
            a.headers.push(("Idempotency-Key".into(), k.clone()));
            return (a, hold);
        }
        let request = Some((g.id("req"), Some(k.clone())));
        let ans = route(g, method, &segs, &params, &key, request);
        // A request refused while checking its parameters saves no result (it may be fixed and
        // sent again with the same key); one that ran does.
        if !(ans.status == 400 && ans.body.pointer("/error/type") == Some(&json!("invalid_request_error"))) {
            g.idem.insert(
                (key.account.clone(), k.clone()),
                Idem { fingerprint: fp, status: ans.status, body: ans.body.clone() },
            );
        }
        return (ans, hold);
    }
    let request = (*method != Method::GET).then(|| (g.id("req"), None));
    (route(g, method, &segs, &params, &key, request), hold)
}

use super::{Idem, Key};

pub(crate) fn masked(secret: &str) -> String {
    if secret.len() > 12 { format!("{}****{}", &secret[..8], &secret[secret.len() - 4..]) } else { "****".into() }
}

fn route(
    g: &mut Inner,
    method: &Method,
    segs: &[&str],
    p: &Value,
    key: &Key,
    request: Option<(String, Option<String>)>,
) -> Answer {
    let account = key.account.as_str();
    match (method.as_str(), segs) {
        ("GET", ["account"]) => account_json(g, account),
        ("POST", ["checkout", "sessions"]) => create_session(g, p, key, request),
        ("GET", ["checkout", "sessions", id]) => match g.sessions.get(*id).filter(|s| s.account == account) {
            Some(_) => ok(g.session_json(id)),
            None => not_found("checkout.session", id, "session"),
        },
        ("POST", ["checkout", "sessions", id, "expire"]) => {
            let Some(s) = g.sessions.get_mut(*id).filter(|s| s.account == account) else {
                return not_found("checkout.session", id, "session");
            };
            if s.status != "open" {
                return error(
                    400,
                    "invalid_request_error",
                    None,
                    None,
                    &format!(
                        "Only Checkout Sessions with a status in [\"open\"] can be expired. This Checkout Session has a status of \"{}\".",
                        s.status
                    ),
                );
            }
            s.status = "expired";
            let (pi, live) = (s.payment_intent.clone(), s.livemode);
            if let Some(i) = g.intents.get_mut(&pi) {
                i.status = "canceled";
                i.canceled_at = Some(jiff::Timestamp::now().as_second() + g.offset_s);
            }
            let obj = g.session_json(id);
            g.emit(account, live, "checkout.session.expired", obj.clone(), request);
            ok(obj)
        }
        ("GET", ["payment_intents", id]) => match g.intents.get(*id).filter(|i| i.account == account) {
            Some(_) => ok(g.intent_json(id)),
            None => not_found("payment_intent", id, "intent"),
        },
        ("GET", ["charges", id]) => match g.charges.get(*id).filter(|c| c.account == account) {
            Some(_) => ok(g.charge_json(id)),
            None => not_found("charge", id, "charge"),
        },
        ("POST", ["refunds"]) => create_refund(g, p, account),
        ("GET", ["refunds", id]) => match g.refunds.get(*id).filter(|r| r.account == account) {
            Some(_) => ok(g.refund_json(id)),
            None => not_found("refund", id, "refund"),
        },
        ("POST", ["refunds", id, "cancel"]) => {
            let Some(r) = g.refunds.get_mut(*id).filter(|r| r.account == account) else {
                return not_found("refund", id, "refund");
            };
            if r.status != "requires_action" {
                return error(
                    400,
                    "invalid_request_error",
                    None,
                    None,
                    &format!(
                        "Only refunds with status 'requires_action' can be canceled. This refund has status '{}'.",
                        r.status
                    ),
                );
            }
            r.status = "canceled";
            let live = g.charges.get(&r.charge).is_some_and(|c| c.livemode);
            let obj = g.refund_json(id);
            g.emit(account, live, "charge.refund.updated", obj.clone(), request);
            ok(obj)
        }
        ("GET", ["webhook_endpoints"]) => {
            let data: Vec<Value> =
                g.endpoints.iter().filter(|e| e.account == account).map(|e| g.endpoint_json(e, false)).collect();
            ok(json!({"object": "list", "data": data, "has_more": false, "url": "/v1/webhook_endpoints"}))
        }
        ("POST", ["webhook_endpoints"]) => create_endpoint(g, p, key),
        ("DELETE", ["webhook_endpoints", id]) => {
            let before = g.endpoints.len();
            g.endpoints.retain(|e| !(e.id == *id && e.account == account));
            if g.endpoints.len() == before {
                return not_found("webhook_endpoint", id, "webhook_endpoint");
            }
            ok(json!({"id": id, "object": "webhook_endpoint", "deleted": true}))
        }
        ("GET", ["events"]) => list_events(g, p, account),
        ("GET", ["events", id]) => match g.events.iter().find(|e| e.id == *id && e.account == account) {
            Some(e) => ok(g.event_json(e)),
            None => not_found("event", id, "id"),
        },
        _ => error(404, "invalid_request_error", None, None, "Unrecognized request URL."),
    }
}

fn account_json(g: &Inner, account: &str) -> Answer {
    let Some(a) = g.account(account) else { return error(404, "invalid_request_error", None, None, "No such account") };
    let cap = |on: bool| if on { "active" } else { "inactive" };
    ok(json!({
        "id": a.id, "object": "account",
        "business_profile": {"mcc": null, "name": a.display_name, "product_description": null, "support_address": null, "support_email": a.email, "support_phone": null, "support_url": null, "url": null},
        "business_type": "company",
        "capabilities": {"card_payments": "active", "konbini_payments": cap(a.konbini), "transfers": "active"},
        "charges_enabled": true, "country": "JP", "default_currency": "jpy", "details_submitted": true,
        "email": a.email, "payouts_enabled": true, "type": "standard", "metadata": {},
    }))
}

const SESSION_PARAMS: &[&str] = &[
    "after_expiration",
    "allow_promotion_codes",
    "automatic_tax",
    "billing_address_collection",
    "cancel_url",
    "client_reference_id",
    "consent_collection",
    "customer",
    "customer_creation",
    "customer_email",
    "customer_update",
    "discounts",
    "expand",
    "expires_at",
    "line_items",
    "locale",
    "metadata",
    "mode",
    "payment_intent_data",
    "payment_method_options",
    "payment_method_types",
    "phone_number_collection",
    "setup_intent_data",
    "shipping_address_collection",
    "shipping_options",
    "submit_type",
    "subscription_data",
    "success_url",
    "tax_id_collection",
];

fn metadata(v: &Value, param: &str) -> Result<Map<String, Value>, Answer> {
    match v {
        Value::Null => Ok(Map::new()),
        Value::Object(m) => {
            if m.len() > 50 {
                return Err(invalid(param, "You can specify up to 50 keys in metadata."));
            }
            for (k, x) in m {
                if k.chars().count() > 40 || x.as_str().is_none_or(|s| s.chars().count() > 500) {
                    return Err(invalid(param, "Metadata keys can be at most 40 characters and values 500."));
                }
            }
            Ok(m.clone())
        }
        _ => Err(invalid(param, "Invalid hash")),
    }
}

fn create_session(g: &mut Inner, p: &Value, key: &Key, request: Option<(String, Option<String>)>) -> Answer {
    if let Some(a) = unknown_params(p, SESSION_PARAMS) {
        return a;
    }
    let now = g.now();
    for req in ["success_url", "cancel_url"] {
        if p.get(req).and_then(Value::as_str).is_none_or(str::is_empty) {
            return missing(req);
        }
    }
    match p.get("mode").and_then(Value::as_str) {
        Some("payment") => {}
        Some("setup" | "subscription") => return invalid("mode", "Tsunagu's sandbox supports mode=payment only."),
        Some(m) => {
            return invalid("mode", &format!("Invalid mode: must be one of payment, setup, or subscription ({m})"));
        }
        None => return missing("mode"),
    }
    // Optional in this API version's schema; Checkout then offers cards.
    let methods: Vec<String> = match p.get("payment_method_types") {
        Some(Value::Array(a)) if !a.is_empty() => a.iter().filter_map(string).collect(),
        None => vec!["card".to_string()],
        _ => return invalid("payment_method_types", "Invalid array"),
    };
    let account = g.account(&key.account).cloned();
    for m in &methods {
        match m.as_str() {
            "card" => {}
            "konbini" if account.as_ref().is_some_and(|a| a.konbini) => {}
            "konbini" => {
                return error(
                    400,
                    "invalid_request_error",
                    None,
                    Some("payment_method_types"),
                    "The payment method type \"konbini\" is invalid. Please ensure the provided type is activated in your dashboard (https://dashboard.stripe.com/account/payments/settings).",
                );
            }
            other => return invalid("payment_method_types", &format!("Invalid payment_method_types[]: {other}")),
        }
    }
    let Some(Value::Array(items)) = p.get("line_items") else { return missing("line_items") };
    let mut lines = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let pd = &it["price_data"];
        if !pd.is_object() {
            return missing(&format!("line_items[{i}][price_data]"));
        }
        if pd["currency"].as_str() != Some("jpy") {
            return invalid(
                &format!("line_items[{i}][price_data][currency]"),
                "Only jpy is supported by this sandbox.",
            );
        }
        let unit = match int(&pd["unit_amount"], &format!("line_items[{i}][price_data][unit_amount]")) {
            Ok(Some(u)) if u >= 0 => u,
            Ok(_) => return missing(&format!("line_items[{i}][price_data][unit_amount]")),
            Err(a) => return a,
        };
        let Some(name) = pd["product_data"]["name"].as_str().filter(|n| !n.is_empty()) else {
            return missing(&format!("line_items[{i}][price_data][product_data][name]"));
        };
        let qty = match int(&it["quantity"], &format!("line_items[{i}][quantity]")) {
            Ok(Some(q)) if q >= 1 => q,
            Ok(_) => return missing(&format!("line_items[{i}][quantity]")),
            Err(a) => return a,
        };
        lines.push((name.to_string(), unit, qty));
    }
    if lines.is_empty() {
        return missing("line_items");
    }
    let total: i64 = lines.iter().map(|(_, u, q)| u * q).sum();
    if methods.iter().any(|m| m == "card") && total < 50 {
        return error(
            400,
            "invalid_request_error",
            Some("amount_too_small"),
            Some("line_items"),
            "The Checkout Session's total amount due must add up to at least ¥50",
        );
    }
    if methods.iter().any(|m| m == "konbini") && !(120..=300_000).contains(&total) {
        return error(
            400,
            "invalid_request_error",
            Some(if total < 120 { "amount_too_small" } else { "amount_too_large" }),
            Some("line_items"),
            "Konbini payments must be between ¥120 and ¥300,000.",
        );
    }
    let days = match int(
        &p["payment_method_options"]["konbini"]["expires_after_days"],
        "payment_method_options[konbini][expires_after_days]",
    ) {
        Ok(Some(d)) if (1..=60).contains(&d) => Some(d),
        Ok(Some(_)) => {
            return invalid(
                "payment_method_options[konbini][expires_after_days]",
                "expires_after_days must be between 1 and 60.",
            );
        }
        Ok(None) => None,
        Err(a) => return a,
    };
    let expires_at = match int(&p["expires_at"], "expires_at") {
        Ok(Some(t)) if (now + 3600..=now + 86_400).contains(&t) => t,
        Ok(Some(_)) => {
            return invalid(
                "expires_at",
                "The `expires_at` timestamp must be between 1 and 24 hours from Checkout Session creation.",
            );
        }
        Ok(None) => now + 86_400,
        Err(a) => return a,
    };
    if let Some(l) = p.get("locale").and_then(Value::as_str)
        && !["auto", "ja", "en"].contains(&l)
    {
        return invalid("locale", &format!("Invalid locale: {l}"));
    }
    let meta = match metadata(&p["metadata"], "metadata") {
        Ok(m) => m,
        Err(a) => return a,
    };
    let pi_meta = match metadata(&p["payment_intent_data"]["metadata"], "payment_intent_data[metadata]") {
        Ok(m) => m,
        Err(a) => return a,
    };
    if let Some(cr) = p.get("client_reference_id").and_then(Value::as_str)
        && cr.chars().count() > 200
    {
        return invalid("client_reference_id", "client_reference_id can be at most 200 characters.");
    }
    let id = g.id("cs_test").replacen("cs_test_", if key.livemode { "cs_live_" } else { "cs_test_" }, 1);
    let pi = g.id("pi");
    g.intents.insert(
        pi.clone(),
        Intent {
            id: pi.clone(),
            account: key.account.clone(),
            livemode: key.livemode,
            amount: total,
            status: "requires_payment_method",
            metadata: pi_meta,
            methods: methods.clone(),
            method: None,
            konbini_expires_at: None,
            konbini_codes: None,
            charge: None,
            created: now,
            canceled_at: None,
            last_error: None,
            session: id.clone(),
            email: p.get("customer_email").and_then(string),
        },
    );
    g.sessions.insert(
        id.clone(),
        Session {
            id: id.clone(),
            account: key.account.clone(),
            livemode: key.livemode,
            status: "open",
            payment_status: "unpaid",
            amount_total: total,
            items: lines,
            methods,
            konbini_days: days,
            success_url: p["success_url"].as_str().unwrap_or_default().to_string(),
            cancel_url: p["cancel_url"].as_str().unwrap_or_default().to_string(),
            client_reference_id: p.get("client_reference_id").and_then(string),
            customer_email: p.get("customer_email").and_then(string),
            metadata: meta,
            expires_at,
            payment_intent: pi,
            declined: None,
        },
    );
    let _ = request;
    ok(g.session_json(&id))
}

fn create_refund(g: &mut Inner, p: &Value, account: &str) -> Answer {
    if let Some(a) = unknown_params(
        p,
        &[
            "amount",
            "charge",
            "expand",
            "metadata",
            "payment_intent",
            "reason",
            "refund_application_fee",
            "reverse_transfer",
        ],
    ) {
        return a;
    }
    let pi = match (p.get("payment_intent").and_then(string), p.get("charge").and_then(string)) {
        (Some(pi), _) => pi,
        (None, Some(ch)) => match g.charges.get(&ch).filter(|c| c.account == account) {
            Some(c) => c.intent.clone(),
            None => return not_found("charge", &ch, "charge"),
        },
        (None, None) => {
            return error(
                400,
                "invalid_request_error",
                Some("parameter_missing"),
                None,
                "One of the following params should be provided for this request: payment_intent or charge.",
            );
        }
    };
    if g.intents.get(&pi).is_none_or(|i| i.account != account) {
        return not_found("payment_intent", &pi, "payment_intent");
    }
    let amount = match int(p.get("amount").unwrap_or(&Value::Null), "amount") {
        Ok(a) => a,
        Err(a) => return a,
    };
    let reason = p.get("reason").and_then(string);
    if let Some(r) = &reason
        && !["duplicate", "fraudulent", "requested_by_customer"].contains(&r.as_str())
    {
        return invalid("reason", &format!("Invalid reason: {r}"));
    }
    let meta = match metadata(p.get("metadata").unwrap_or(&Value::Null), "metadata") {
        Ok(m) => m,
        Err(a) => return a,
    };
    match g.refund(&pi, amount, reason, meta) {
        Ok(id) => ok(g.refund_json(&id)),
        Err((status, code, msg)) => error(status, "invalid_request_error", Some(code), Some("amount"), &msg),
    }
}

fn create_endpoint(g: &mut Inner, p: &Value, key: &Key) -> Answer {
    if let Some(a) =
        unknown_params(p, &["api_version", "connect", "description", "enabled_events", "expand", "metadata", "url"])
    {
        return a;
    }
    let Some(url) = p.get("url").and_then(string).filter(|u| !u.is_empty()) else { return missing("url") };
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return invalid("url", "Invalid URL: URL must be publicly accessible.");
    }
    let events: Vec<String> = match p.get("enabled_events") {
        Some(Value::Array(a)) if !a.is_empty() => a.iter().filter_map(string).collect(),
        _ => return missing("enabled_events"),
    };
    const KNOWN: &[&str] = &[
        "*",
        "charge.refund.updated",
        "charge.refunded",
        "checkout.session.async_payment_failed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.completed",
        "checkout.session.expired",
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "charge.succeeded",
    ];
    if let Some(bad) = events.iter().find(|e| !KNOWN.contains(&e.as_str())) {
        return invalid("enabled_events", &format!("Invalid enabled_events[]: {bad}"));
    }
    let version = p.get("api_version").and_then(string);
    if let Some(v) = &version
        && !(v.len() == 10 && v.as_bytes()[4] == b'-')
    {
        return invalid("api_version", &format!("Invalid api_version: {v}"));
    }
    if g.endpoints.iter().filter(|e| e.account == key.account).count() >= 16 {
        return error(
            400,
            "invalid_request_error",
            None,
            None,
            "You have reached the maximum of 16 test webhook endpoints.",
        );
    }
    let id = g.id("we");
    let secret = format!("whsec_{}", g.id("s").trim_start_matches("s_"));
    let e = Endpoint {
        id,
        account: key.account.clone(),
        livemode: key.livemode,
        url,
        secret,
        events,
        api_version: version,
        description: p.get("description").and_then(string),
        created: g.now(),
    };
    let body = g.endpoint_json(&e, true);
    g.endpoints.push(e);
    ok(body)
}

fn list_events(g: &Inner, p: &Value, account: &str) -> Answer {
    let limit = match int(p.get("limit").unwrap_or(&Value::Null), "limit") {
        Ok(Some(l)) if (1..=100).contains(&l) => l as usize,
        Ok(Some(_)) => return invalid("limit", "limit must be between 1 and 100"),
        Ok(None) => 10,
        Err(a) => return a,
    };
    let gte = match int(&p["created"]["gte"], "created[gte]") {
        Ok(v) => v,
        Err(a) => return a,
    };
    let types: Vec<String> = match p.get("types") {
        Some(Value::Array(a)) => a.iter().filter_map(string).collect(),
        _ => Vec::new(),
    };
    let single = p.get("type").and_then(string);
    let after = p.get("starting_after").and_then(string);
    // Newest first; events older than 30 days are not listed (NOTES §1).
    let oldest = g.now() - 30 * 86_400;
    let mut it = g.events.iter().rev().filter(|e| {
        e.account == account
            && e.created >= oldest
            && gte.is_none_or(|t| e.created >= t)
            && (types.is_empty() || types.contains(&e.kind))
            && single.as_ref().is_none_or(|t| *t == e.kind)
    });
    let mut page: Vec<Value> = Vec::new();
    if let Some(after) = &after {
        for e in it.by_ref() {
            if e.id == *after {
                break;
            }
        }
    }
    let mut has_more = false;
    for e in it {
        if page.len() == limit {
            has_more = true;
            break;
        }
        page.push(g.event_json(e));
    }
    ok(json!({"object": "list", "data": page, "has_more": has_more, "url": "/v1/events"}))
}

/// The voucher's codes and deadline when a konbini payment is chosen.
pub(crate) fn issue_voucher(g: &mut Inner, pi: &str) {
    let now = g.now();
    let days = g.intents.get(pi).and_then(|i| g.sessions.get(&i.session)).and_then(|s| s.konbini_days).unwrap_or(3);
    let code = g.digits(12);
    let confirm = g.digits(6);
    if let Some(i) = g.intents.get_mut(pi) {
        i.status = "requires_action";
        i.method = Some("konbini".into());
        i.konbini_expires_at = Some(konbini_deadline(now, days));
        i.konbini_codes = Some((code, confirm));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_forms_become_objects_and_arrays() {
        let v = parse_form(
            "line_items%5B0%5D%5Bprice_data%5D%5Bunit_amount%5D=3000&line_items%5B0%5D%5Bquantity%5D=2&payment_method_types%5B%5D=card&payment_method_types%5B%5D=konbini&metadata%5Bk%5D=v&mode=payment",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"line_items": [{"price_data": {"unit_amount": "3000"}, "quantity": "2"}], "payment_method_types": ["card", "konbini"], "metadata": {"k": "v"}, "mode": "payment"})
        );
        assert!(parse_form("a%5Bb=1").is_err());
    }
}
