//! Per-request context: operation id, cookies, CSRF protection and flash messages.
//!
//! CSRF: every non-GET request to the console must carry `csrf_token` (form field) or
//! `X-CSRF-Token` (header) equal to HMAC(key, binding), where the binding is the session
//! (logged in) or a random anonymous cookie (log-in and sign-up forms). The check lives in
//! this one middleware so that no handler can forget it. Webhook routes are mounted outside.

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tracing::Instrument;

use super::error::{AppError, OP_ID};
use crate::app::SharedApp;
use crate::crypto::{ct_eq, hmac_b64, random_hex, random_token, sha256_hex};

pub const SESSION_COOKIE: &str = "tsunagu_session";
const ANON_COOKIE: &str = "tsunagu_anon";
const FLASH_COOKIE: &str = "tsunagu_flash";
const MAX_FORM_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Flash {
    /// `success`, `error` or `info`.
    pub kind: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct RequestContext {
    pub op_id: String,
    pub csrf_token: String,
    pub flash: Option<Flash>,
    /// SHA-256 of the session cookie's token, when there is one.
    pub session_hash: Option<String>,
    pub client_ip: String,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("request context middleware missing")))
    }
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub fn set_cookie(app: &SharedApp, name: &str, value: &str, max_age_secs: Option<i64>) -> HeaderValue {
    let secure = if app.config.manager_is_https() { "; Secure" } else { "" };
    let age = match max_age_secs {
        Some(s) => format!("; Max-Age={s}"),
        None => String::new(),
    };
    HeaderValue::from_str(&format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax{secure}{age}"))
        .expect("cookie values are URL-safe")
}

/// A redirect that shows `message` once on the next page.
pub fn flash_redirect(app: &SharedApp, to: &str, kind: &str, message: &str) -> Response {
    let flash = Flash { kind: kind.into(), message: message.into() };
    let value = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&flash).unwrap_or_default());
    let mut resp = Redirect::to(to).into_response();
    resp.headers_mut().append(SET_COOKIE, set_cookie(app, FLASH_COOKIE, &value, Some(60)));
    resp
}

fn read_flash(headers: &HeaderMap) -> Option<Flash> {
    let raw = cookie(headers, FLASH_COOKIE)?;
    let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
    let flash: Flash = serde_json::from_slice(&bytes).ok()?;
    matches!(flash.kind.as_str(), "success" | "error" | "info").then_some(flash)
}

fn client_ip(app: &SharedApp, req: &Request) -> String {
    if app.config.http.trust_forwarded_for
        && let Some(xff) = req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok())
        && let Some(last) = xff.rsplit(',').next()
    {
        return last.trim().to_string();
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

pub fn csrf_token_for(app: &SharedApp, binding: &str) -> String {
    hmac_b64(&app.csrf_keys[0], binding)
}

/// Every token that is valid for this binding (one per key during a key rotation).
fn accepted_tokens(app: &SharedApp, binding: &str) -> Vec<String> {
    app.csrf_keys.iter().map(|k| hmac_b64(k, binding)).collect()
}

fn is_exempt(path: &str) -> bool {
    path.starts_with("/line/webhook/") || path.starts_with("/zoom/webhook/") || path.starts_with("/stripe/webhook/")
}

/// Paths fetched by machines (LINE fetching media, webhooks, probes): their answers never
/// set or slide a cookie, so caches and CDNs may keep them (a `Set-Cookie` makes most of
/// them refuse) and a browser opening a media link does not extend its login.
fn is_cookieless(path: &str) -> bool {
    is_exempt(path) || path.starts_with("/media/") || matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// The context middleware: op id, logging span, metrics, CSRF, flash.
pub async fn context(State(app): State<SharedApp>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let op_id = random_hex(8);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = tracing::info_span!("request", op_id = %op_id, method = %method, path = %path);

    let headers = req.headers().clone();
    let session_hash = cookie(&headers, SESSION_COOKIE).map(sha256_hex);
    let anon = cookie(&headers, ANON_COOKIE).filter(|v| v.len() >= 16 && v.len() <= 64).map(str::to_string);
    let cookieless = is_cookieless(&path);
    let new_anon = if !cookieless && session_hash.is_none() && anon.is_none() { Some(random_token(18)) } else { None };
    let (csrf_token, accepted) = if cookieless {
        // No page with a form is served there, and its POSTs (webhooks) are exempt: nothing to
        // sign or check (this path takes LINE's webhooks at thousands a second).
        (String::new(), Vec::new())
    } else {
        let binding = match (&session_hash, &anon, &new_anon) {
            (Some(h), _, _) => format!("s:{h}"),
            (None, Some(a), _) => format!("a:{a}"),
            (None, None, Some(n)) => format!("a:{n}"),
            // Not reached (a request with neither cookie gets a new anonymous one), but a
            // token bound to nothing anyone can present again is the safe answer.
            (None, None, None) => format!("x:{}", random_token(18)),
        };
        (csrf_token_for(&app, &binding), accepted_tokens(&app, &binding))
    };
    let session_token = cookie(&headers, SESSION_COOKIE).map(str::to_string);
    let flash = read_flash(&headers);
    let had_flash = cookie(&headers, FLASH_COOKIE).is_some();
    let ctx = RequestContext {
        op_id: op_id.clone(),
        csrf_token: csrf_token.clone(),
        flash,
        session_hash,
        client_ip: client_ip(&app, &req),
    };
    req.extensions_mut().insert(ctx);

    let unsafe_method = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let op = op_id.clone();
    let fresh_anon = new_anon.is_some();
    let inner = async move {
        if unsafe_method && !is_exempt(&path) {
            match verify_csrf(req, &accepted, fresh_anon).await {
                Ok(req) => next.run(req).await,
                Err(e) => e.into_response(),
            }
        } else {
            next.run(req).await
        }
    };
    let mut resp = OP_ID.scope(op.clone(), inner.instrument(span.clone())).await;

    let h = resp.headers_mut();
    if let Some(n) = &new_anon {
        h.append(SET_COOKIE, set_cookie(&app, ANON_COOKIE, n, None));
    }
    let sets = |h: &HeaderMap, name: &str| {
        h.get_all(SET_COOKIE).iter().any(|v| v.to_str().map(|s| s.starts_with(&format!("{name}="))).unwrap_or(false))
    };
    // Sessions slide in the database; the cookie's lifetime has to slide with them.
    if let Some(token) = &session_token
        && !cookieless
        && token.len() <= 64
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !sets(h, SESSION_COOKIE)
    {
        let max_age = i64::from(app.config.http.session_days) * 24 * 60 * 60;
        h.append(SET_COOKIE, set_cookie(&app, SESSION_COOKIE, token, Some(max_age)));
    }
    let sets_flash = sets(h, FLASH_COOKIE);
    if had_flash && !sets_flash && !cookieless {
        h.append(SET_COOKIE, set_cookie(&app, FLASH_COOKIE, "", Some(0)));
    }
    h.insert("x-request-id", HeaderValue::from_str(&op).expect("hex"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    // Unless the handler set its own (media files opened in the browser's own viewer).
    h.entry("content-security-policy").or_insert(HeaderValue::from_static(
        "default-src 'self'; img-src 'self' data: https:; style-src 'self'; form-action 'self'; frame-ancestors 'none'",
    ));
    let route =
        resp.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "(unmatched)".into());
    let elapsed = started.elapsed().as_secs_f64();
    let status = resp.status().as_u16();
    app.metrics.observe_request(method.as_str(), &route, status, elapsed);
    span.in_scope(|| tracing::info!(status, latency_ms = (elapsed * 1000.0) as u64, "request finished"));
    resp
}

async fn verify_csrf(req: Request, accepted: &[String], fresh_anon: bool) -> Result<Request, AppError> {
    let matches = |t: &str| accepted.iter().any(|a| ct_eq(t, a));
    if fresh_anon {
        // No cookie at all: this browser never loaded one of our forms.
        return Err(AppError::Csrf);
    }
    if let Some(h) = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()) {
        return if matches(h) { Ok(req) } else { Err(AppError::Csrf) };
    }
    let is_form = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.starts_with("application/x-www-form-urlencoded"))
        .unwrap_or(false);
    if !is_form {
        return Err(AppError::Csrf);
    }
    let (parts, body) = req.into_parts();
    let bytes =
        to_bytes(body, MAX_FORM_BYTES).await.map_err(|_| AppError::BadRequest("送信内容が大きすぎます。".into()))?;
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
    let ok = fields.iter().any(|(k, v)| k == "csrf_token" && matches(v));
    if !ok {
        return Err(AppError::Csrf);
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// Route layer: carries the matched route pattern out to [`context`] for metrics labels
/// (the outer middleware runs before routing and cannot see it).
pub async fn tag_route(req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let mut resp = next.run(req).await;
    if let Some(m) = matched {
        resp.extensions_mut().insert(m);
    }
    resp
}
