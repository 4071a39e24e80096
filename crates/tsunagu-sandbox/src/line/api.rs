//! Messaging API and channel-token endpoints.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Friendship, Inner, LineExchange, LineSandbox, Received};

const RETRY_KEY_MEMORY: Duration = Duration::from_secs(24 * 3600);
const REPLY_TOKEN_LIFE: Duration = Duration::from_secs(60);

pub(crate) struct Answer {
    status: u16,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
}

fn ok(body: Value) -> Answer {
    Answer { status: 200, body: Some(body), headers: vec![] }
}

fn fail(status: u16, message: &str) -> Answer {
    Answer { status, body: Some(json!({"message": message})), headers: vec![] }
}

fn bad(message: &str, property: &str, detail: &str) -> Answer {
    Answer {
        status: 400,
        body: Some(json!({"message": message, "details": [{"message": detail, "property": property}]})),
        headers: vec![],
    }
}

fn oauth_fail(status: u16, error: &str, description: &str) -> Answer {
    Answer { status, body: Some(json!({"error": error, "error_description": description})), headers: vec![] }
}

fn respond(sb: &LineSandbox, method: &str, path: &str, request_body: &str, a: Answer) -> Response {
    let text = a.body.as_ref().map(Value::to_string).unwrap_or_default();
    sb.lock().record(LineExchange {
        method: method.into(),
        path: path.into(),
        status: a.status,
        request_body: request_body.into(),
        response_body: text.clone(),
    });
    let mut resp = (StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), text).into_response();
    resp.headers_mut().insert("content-type", "application/json".parse().expect("a header value"));
    for (k, v) in a.headers {
        if let Ok(v) = v.parse() {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

fn form(body: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str(body).unwrap_or_default()
}

fn field(f: &[(String, String)], k: &str) -> String {
    f.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default()
}

fn credentials(g: &Inner, f: &[(String, String)]) -> Option<String> {
    let id = field(f, "client_id");
    let secret = field(f, "client_secret");
    g.channels.get(&id).filter(|c| c.spec.channel_secret == secret).map(|_| id)
}

pub(crate) async fn issue_stateless(State(sb): State<LineSandbox>, body: String) -> Response {
    let a = {
        let mut g = sb.lock();
        g.token_requests += 1;
        let f = form(&body);
        if field(&f, "grant_type") != "client_credentials" {
            oauth_fail(400, "unsupported_grant_type", "unsupported grant_type")
        } else if let Some(channel) = credentials(&g, &f) {
            let token = format!("sbx-line-{}", g.token(40));
            let ttl = g.stateless_ttl;
            g.tokens.insert(token.clone(), (channel, Instant::now() + ttl));
            ok(
                json!({"access_token": token, "expires_in": ttl.as_secs().saturating_sub(1).max(1), "token_type": "Bearer"}),
            )
        } else {
            oauth_fail(400, "invalid_client", "invalid client_secret")
        }
    };
    respond(&sb, "POST", "/oauth2/v3/token", &body, a)
}

pub(crate) async fn issue_short_lived(State(sb): State<LineSandbox>, body: String) -> Response {
    let a = {
        let mut g = sb.lock();
        g.token_requests += 1;
        let f = form(&body);
        match credentials(&g, &f) {
            Some(channel) if field(&f, "grant_type") == "client_credentials" => {
                let token = format!("sbx-line-sl-{}", g.token(40));
                let ttl = Duration::from_secs(2_592_000);
                g.tokens.insert(token.clone(), (channel.clone(), Instant::now() + ttl));
                let c = g.channels.get_mut(&channel).expect("checked");
                c.short_lived.push_back(token.clone());
                // At most 30 per channel: issuing more revokes the oldest (NOTES §1).
                let revoked = if c.short_lived.len() > 30 { c.short_lived.pop_front() } else { None };
                if let Some(old) = revoked {
                    g.tokens.remove(&old);
                }
                ok(json!({"access_token": token, "expires_in": ttl.as_secs(), "token_type": "Bearer"}))
            }
            Some(_) => oauth_fail(400, "unsupported_grant_type", "unsupported grant_type"),
            None => oauth_fail(400, "invalid_client", "invalid client_secret"),
        }
    };
    respond(&sb, "POST", "/v2/oauth/accessToken", &body, a)
}

pub(crate) async fn verify(State(sb): State<LineSandbox>, body: String) -> Response {
    let a = {
        let g = sb.lock();
        let token = field(&form(&body), "access_token");
        match g.tokens.get(&token).filter(|(_, exp)| *exp > Instant::now()) {
            Some((channel, exp)) => ok(
                json!({"client_id": channel, "expires_in": exp.duration_since(Instant::now()).as_secs(), "scope": ""}),
            ),
            None => oauth_fail(400, "invalid_request", "access token expired"),
        }
    };
    respond(&sb, "POST", "/v2/oauth/verify", &body, a)
}

/// The channel of a valid bearer token.
fn channel_of(g: &Inner, headers: &HeaderMap) -> Option<String> {
    let token = headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ")?;
    g.tokens.get(token).filter(|(_, exp)| *exp > Instant::now()).map(|(c, _)| c.clone())
}

const AUTH_FAILED: &str = "Authentication failed. Confirm that the access token in the authorization header is valid.";

/// Per-channel, per-endpoint limit by a sliding 1000 ms window.
fn admit(g: &mut Inner, channel: &str, endpoint: &'static str) -> bool {
    let limit = g.limits.get(endpoint).copied().unwrap_or(2000);
    let now = Instant::now();
    let Some(c) = g.channels.get_mut(channel) else { return false };
    let w: &mut VecDeque<Instant> = c.windows.entry(endpoint).or_default();
    while w.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
        w.pop_front();
    }
    if w.len() as u32 >= limit {
        g.stats.rate_429 += 1;
        return false;
    }
    w.push_back(now);
    let n = w.len() as u32;
    let peak = g.stats.max_in_any_second.entry((channel.to_string(), endpoint.to_string())).or_default();
    *peak = (*peak).max(n);
    true
}

fn valid_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

fn valid_user_id(s: &str) -> bool {
    s.len() == 33 && s.starts_with('U') && s[1..].chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

fn check_messages(body: &Value) -> Result<Vec<Value>, Answer> {
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return Err(bad("The request body has 1 error(s)", "messages", "May not be empty"));
    };
    if messages.is_empty() || messages.len() > 5 {
        return Err(bad("The request body has 1 error(s)", "messages", "Size must be between 1 and 5"));
    }
    for (i, m) in messages.iter().enumerate() {
        let t = m.get("type").and_then(Value::as_str).unwrap_or("");
        let problem = match t {
            "text" => match m.get("text").and_then(Value::as_str) {
                Some(x) if !x.is_empty() && x.encode_utf16().count() <= 5000 => None,
                _ => Some(("text", "Length must be between 1 and 5000")),
            },
            "image" | "video" => {
                let https = |k: &str| m.get(k).and_then(Value::as_str).is_some_and(|u| media_url(u) && u.len() <= 2000);
                if !https("originalContentUrl") {
                    Some(("originalContentUrl", "Must be a valid HTTPS URL"))
                } else if !https("previewImageUrl") {
                    Some(("previewImageUrl", "Must be a valid HTTPS URL"))
                } else {
                    None
                }
            }
            "audio" => {
                if !m.get("originalContentUrl").and_then(Value::as_str).is_some_and(media_url) {
                    Some(("originalContentUrl", "Must be a valid HTTPS URL"))
                } else if m.get("duration").and_then(Value::as_i64).is_none_or(|d| d <= 0) {
                    Some(("duration", "Must be a positive number"))
                } else {
                    None
                }
            }
            _ => Some(("type", "Invalid message type")),
        };
        if let Some((prop, detail)) = problem {
            return Err(bad("The request body has 1 error(s)", &format!("messages[{i}].{prop}"), detail));
        }
    }
    Ok(messages.clone())
}

enum Fault {
    None,
    After500,
    Hold(Duration),
}

fn draw_fault(g: &mut Inner) -> Result<Fault, Answer> {
    let f = g.faults.clone();
    if f.rate_500 + f.rate_timeout <= 0.0 {
        return Ok(Fault::None);
    }
    let d = g.fault_draw();
    if d < f.rate_500 {
        if g.fault_draw() < 0.5 {
            g.stats.injected_500_before += 1;
            return Err(fail(500, "Internal server error"));
        }
        g.stats.injected_500_after += 1;
        return Ok(Fault::After500);
    }
    if d < f.rate_500 + f.rate_timeout {
        g.stats.injected_timeouts += 1;
        return Ok(Fault::Hold(f.timeout_hold));
    }
    Ok(Fault::None)
}

/// A media URL LINE would fetch: HTTPS. Like webhook endpoints, the sandbox also takes
/// loopback HTTP, so that tests and the demo can send media without certificates.
fn media_url(u: &str) -> bool {
    u.starts_with("https://") || u.starts_with("http://127.0.0.1") || u.starts_with("http://localhost")
}

/// Deliver `messages` to `to` (friends only); returns how many recipients were counted.
fn deliver(
    g: &mut Inner,
    channel: &str,
    to: &[String],
    messages: &[Value],
    via: &'static str,
    request_id: &str,
) -> i64 {
    let now = jiff::Timestamp::now().as_millisecond() + g.clock_offset_ms;
    let mut counted = 0;
    for user in to {
        let friend = g.channels.get(channel).and_then(|c| c.friends.get(user)).copied() == Some(Friendship::Friend);
        if !friend {
            continue;
        }
        counted += 1;
        for m in messages {
            g.received.push(Received {
                channel_id: channel.to_string(),
                user_id: user.clone(),
                message: m.clone(),
                via,
                request_id: request_id.to_string(),
                at_ms: now,
            });
        }
    }
    counted
}

/// Push and multicast: the same rules but for recipients and the answer.
fn send(g: &mut Inner, headers: &HeaderMap, body: &str, multicast: bool) -> (Answer, Option<Duration>) {
    g.stats.requests += 1;
    let Some(channel) = channel_of(g, headers) else { return (fail(401, AUTH_FAILED), None) };
    let endpoint = if multicast { "multicast" } else { "push" };
    if g.channels.get(&channel).is_some_and(|c| c.forbidden.contains(endpoint)) {
        return (fail(403, "Access to this API is not available for your account"), None);
    }
    if !admit(g, &channel, endpoint) {
        return (fail(429, "The API rate limit has been exceeded. Try again later."), None);
    }
    let request_id = g.hex(32);
    let retry_key = headers.get("x-line-retry-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    if let Some(k) = &retry_key {
        if !valid_uuid(k) {
            return (fail(400, "The retry key format is invalid"), None);
        }
        let c = g.channels.get_mut(&channel).expect("known channel");
        c.retry_keys.retain(|_, (_, at, _)| at.elapsed() < RETRY_KEY_MEMORY);
        if let Some((accepted, _, ids)) = c.retry_keys.get(k).cloned() {
            g.stats.duplicates_409 += 1;
            let mut body = json!({"message": "The retry key is already accepted"});
            if !multicast && !ids.is_empty() {
                body["sentMessages"] = Value::Array(ids.iter().map(|id| json!({"id": id})).collect());
            }
            let a = Answer {
                status: 409,
                body: Some(body),
                headers: vec![("x-line-request-id", request_id), ("x-line-accepted-request-id", accepted)],
            };
            return (a, None);
        }
    }
    let fault = match draw_fault(g) {
        Ok(f) => f,
        Err(a) => return (a, None),
    };
    let Ok(parsed) = serde_json::from_str::<Value>(body) else {
        return (fail(400, "The request body could not be parsed as JSON"), None);
    };
    let messages = match check_messages(&parsed) {
        Ok(m) => m,
        Err(a) => return (a, None),
    };
    let to: Vec<String> = if multicast {
        match parsed.get("to").and_then(Value::as_array) {
            Some(a) if !a.is_empty() && a.len() <= 500 => {
                a.iter().filter_map(Value::as_str).map(str::to_string).collect()
            }
            _ => return (bad("The request body has 1 error(s)", "to", "Size must be between 1 and 500"), None),
        }
    } else {
        parsed.get("to").and_then(Value::as_str).map(|s| vec![s.to_string()]).unwrap_or_default()
    };
    if to.is_empty() || !to.iter().all(|u| valid_user_id(u)) {
        return (fail(400, "The property, 'to', in the request body is invalid (line: -, column: -)"), None);
    }
    // The monthly quota, counted per recipient who would receive it.
    let would = to
        .iter()
        .filter(|u| g.channels.get(&channel).and_then(|c| c.friends.get(*u)).copied() == Some(Friendship::Friend))
        .count() as i64;
    let c = g.channels.get(&channel).expect("known channel");
    if let Some(q) = c.spec.monthly_quota
        && c.usage + would > q
    {
        g.stats.monthly_429 += 1;
        return (fail(429, "You have reached your monthly limit."), None);
    }
    let counted = deliver(g, &channel, &to, &messages, endpoint, &request_id);
    let ids: Vec<String> = if multicast {
        vec![]
    } else {
        messages
            .iter()
            .map(|_| format!("{}", 400_000_000_000_000_000u64 + g.next() % 100_000_000_000_000_000))
            .collect()
    };
    let c = g.channels.get_mut(&channel).expect("known channel");
    c.usage += counted;
    if let Some(k) = retry_key {
        c.retry_keys.insert(k, (request_id.clone(), Instant::now(), ids.clone()));
    }
    let body = if multicast {
        json!({})
    } else {
        json!({"sentMessages": ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>()})
    };
    let a = Answer { status: 200, body: Some(body), headers: vec![("x-line-request-id", request_id)] };
    match fault {
        Fault::None => (a, None),
        Fault::After500 => (fail(500, "Internal server error"), None),
        Fault::Hold(d) => (a, Some(d)),
    }
}

async fn send_handler(sb: LineSandbox, headers: HeaderMap, body: String, multicast: bool) -> Response {
    let (a, hold) = {
        let mut g = sb.lock();
        send(&mut g, &headers, &body, multicast)
    };
    let path = if multicast { "/v2/bot/message/multicast" } else { "/v2/bot/message/push" };
    let resp = respond(&sb, "POST", path, &body, a);
    if let Some(d) = hold {
        tokio::time::sleep(d).await;
    }
    resp
}

pub(crate) async fn push(State(sb): State<LineSandbox>, headers: HeaderMap, body: String) -> Response {
    send_handler(sb, headers, body, false).await
}

pub(crate) async fn multicast(State(sb): State<LineSandbox>, headers: HeaderMap, body: String) -> Response {
    send_handler(sb, headers, body, true).await
}

pub(crate) async fn reply(State(sb): State<LineSandbox>, headers: HeaderMap, body: String) -> Response {
    let a = {
        let mut g = sb.lock();
        g.stats.requests += 1;
        match channel_of(&g, &headers) {
            None => fail(401, AUTH_FAILED),
            Some(channel) if !admit(&mut g, &channel, "reply") => {
                fail(429, "The API rate limit has been exceeded. Try again later.")
            }
            Some(_) if headers.contains_key("x-line-retry-key") => {
                fail(400, "The retry key is not supported for this endpoint")
            }
            Some(channel) => match serde_json::from_str::<Value>(&body) {
                Err(_) => fail(400, "The request body could not be parsed as JSON"),
                Ok(parsed) => match check_messages(&parsed) {
                    Err(a) => a,
                    Ok(messages) => {
                        let token = parsed.get("replyToken").and_then(Value::as_str).unwrap_or("").to_string();
                        let c = g.channels.get_mut(&channel).expect("known channel");
                        // Single use, and within a minute.
                        match c.reply_tokens.remove(&token) {
                            Some((user, issued)) if issued.elapsed() < REPLY_TOKEN_LIFE => {
                                let request_id = g.hex(32);
                                deliver(&mut g, &channel, &[user], &messages, "reply", &request_id);
                                let ids: Vec<Value> =
                                    messages.iter().map(|_| json!({"id": format!("{}", 500_000_000_000_000_000u64 + g.next() % 100_000_000_000_000_000)})).collect();
                                Answer {
                                    status: 200,
                                    body: Some(json!({"sentMessages": ids})),
                                    headers: vec![("x-line-request-id", request_id)],
                                }
                            }
                            _ => fail(400, "Invalid reply token"),
                        }
                    }
                },
            },
        }
    };
    respond(&sb, "POST", "/v2/bot/message/reply", &body, a)
}

fn read<F: FnOnce(&mut Inner, String) -> Answer>(sb: &LineSandbox, headers: &HeaderMap, path: &str, f: F) -> Response {
    let a = {
        let mut g = sb.lock();
        g.stats.requests += 1;
        match channel_of(&g, headers) {
            None => fail(401, AUTH_FAILED),
            Some(channel) => f(&mut g, channel),
        }
    };
    respond(sb, "GET", path, "", a)
}

pub(crate) async fn quota(State(sb): State<LineSandbox>, headers: HeaderMap) -> Response {
    read(&sb, &headers, "/v2/bot/message/quota", |g, ch| match g.channels[&ch].spec.monthly_quota {
        Some(v) => ok(json!({"type": "limited", "value": v})),
        None => ok(json!({"type": "none"})),
    })
}

pub(crate) async fn consumption(State(sb): State<LineSandbox>, headers: HeaderMap) -> Response {
    read(&sb, &headers, "/v2/bot/message/quota/consumption", |g, ch| ok(json!({"totalUsage": g.channels[&ch].usage})))
}

pub(crate) async fn bot_info(State(sb): State<LineSandbox>, headers: HeaderMap) -> Response {
    read(&sb, &headers, "/v2/bot/info", |g, ch| {
        let s = &g.channels[&ch].spec;
        let mut info = json!({
            "userId": s.bot_user_id, "basicId": s.basic_id, "displayName": s.display_name,
            "chatMode": "bot", "markAsReadMode": "auto"
        });
        if let Some(p) = &g.channels[&ch].picture_url {
            info["pictureUrl"] = json!(p);
        }
        ok(info)
    })
}

pub(crate) async fn profile(
    State(sb): State<LineSandbox>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/v2/bot/profile/{user_id}");
    read(&sb, &headers, &path, |g, ch| {
        let friend = g.channels[&ch].friends.get(&user_id).copied() == Some(Friendship::Friend);
        match g.user(&user_id) {
            Some(u) if friend => ok(json!({"userId": u.user_id, "displayName": u.display_name, "language": "ja"})),
            _ => fail(404, "Not found"),
        }
    })
}

pub(crate) async fn set_webhook(State(sb): State<LineSandbox>, headers: HeaderMap, body: String) -> Response {
    let a = {
        let mut g = sb.lock();
        match channel_of(&g, &headers) {
            None => fail(401, AUTH_FAILED),
            Some(ch) => {
                let endpoint = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("endpoint").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_default();
                // LINE wants HTTPS; the sandbox also takes loopback HTTP so that tests and the
                // demo can receive webhooks without certificates.
                let loopback = endpoint.starts_with("http://127.0.0.1") || endpoint.starts_with("http://localhost");
                if !(endpoint.starts_with("https://") || loopback) || endpoint.len() > 500 {
                    bad("The request body has 1 error(s)", "endpoint", "Must be a valid HTTPS URL")
                } else {
                    let c = g.channels.get_mut(&ch).expect("known channel");
                    c.webhook = Some(endpoint);
                    ok(json!({}))
                }
            }
        }
    };
    respond(&sb, "PUT", "/v2/bot/channel/webhook/endpoint", &body, a)
}

pub(crate) async fn get_webhook(State(sb): State<LineSandbox>, headers: HeaderMap) -> Response {
    read(&sb, &headers, "/v2/bot/channel/webhook/endpoint", |g, ch| {
        let c = &g.channels[&ch];
        match &c.webhook {
            Some(e) => ok(json!({"endpoint": e, "active": c.webhook_active})),
            None => fail(404, "Not found"),
        }
    })
}

pub(crate) async fn test_webhook(State(sb): State<LineSandbox>, headers: HeaderMap, body: String) -> Response {
    let target = {
        let g = sb.lock();
        channel_of(&g, &headers).map(|ch| {
            let given = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v.get("endpoint").and_then(Value::as_str).map(str::to_string));
            let c = &g.channels[&ch];
            (given.or(c.webhook.clone()), c.spec.channel_secret.clone(), c.spec.bot_user_id.clone())
        })
    };
    let a = match target {
        None => fail(401, AUTH_FAILED),
        Some((None, _, _)) => fail(404, "Not found"),
        Some((Some(endpoint), secret, destination)) => {
            let payload = json!({"destination": destination, "events": []}).to_string();
            let timestamp = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            match sb.post_signed(&endpoint, &secret, payload).await {
                Ok(s) if (200..300).contains(&s) => ok(
                    json!({"success": true, "timestamp": timestamp, "statusCode": s, "reason": "OK", "detail": s.to_string()}),
                ),
                Ok(s) => ok(
                    json!({"success": false, "timestamp": timestamp, "statusCode": s, "reason": "ERROR_STATUS_CODE", "detail": s.to_string()}),
                ),
                Err(e) => ok(
                    json!({"success": false, "timestamp": timestamp, "statusCode": 0, "reason": "COULD_NOT_CONNECT", "detail": e}),
                ),
            }
        }
    };
    respond(&sb, "POST", "/v2/bot/channel/webhook/test", &body, a)
}
