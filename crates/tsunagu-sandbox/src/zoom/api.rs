//! The REST API under `/v2` (operation ids from `zoom-meetings-api.openapi.json`; `GET
//! /users/{userId}` from the 2023-10 file). One handler parses the route, checks the token and
//! its scopes (NOTES §1.4), applies the rate limits (§7), injects faults, runs the operation
//! and records the exchange.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Map, Value, json};

use super::{EventView, Exchange, Inner, RegistrantView, ZoomSandbox};

/// The account's Zoom plan (NOTES §7).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Plan {
    Free,
    #[default]
    Pro,
    BusinessPlus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Label {
    Light,
    Medium,
}

impl Label {
    fn name(self) -> &'static str {
        match self {
            Label::Light => "Light",
            Label::Medium => "Medium",
        }
    }

    fn per_second(self, plan: Plan) -> u32 {
        match (plan, self) {
            (Plan::Free, Label::Light) => 4,
            (Plan::Free, Label::Medium) => 2,
            (Plan::Pro, Label::Light) => 30,
            (Plan::Pro, Label::Medium) => 20,
            (Plan::BusinessPlus, Label::Light) => 80,
            (Plan::BusinessPlus, Label::Medium) => 60,
        }
    }

    /// Free accounts also have daily caps per label.
    fn daily(self, plan: Plan) -> Option<u32> {
        match (plan, self) {
            (Plan::Free, Label::Light) => Some(6000),
            (Plan::Free, Label::Medium) => Some(2000),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Account {
    pub plan: Plan,
    pub require_passcode: bool,
    pub embed_passcode: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Registrant {
    pub id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub status: String,
    pub join_url: String,
    pub create_time: String,
    pub pin: i64,
    pub custom_questions: Vec<Value>,
}

#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub id: i64,
    pub uuid: String,
    pub webinar: bool,
    pub account_id: String,
    pub host_id: String,
    pub host_email: String,
    pub topic: String,
    pub kind: i64,
    pub start: Option<Timestamp>,
    pub timezone: String,
    pub duration: i64,
    pub agenda: String,
    pub password: String,
    pub encrypted: String,
    pub created_ms: i64,
    pub created_at: String,
    pub settings: Map<String, Value>,
    pub registrants: Vec<Registrant>,
    pub capacity: u32,
    pub required_questions: Vec<String>,
    pub start_token: String,
    pub registration_token: String,
}

impl Event {
    pub fn approval_type(&self) -> i64 {
        self.settings.get("approval_type").and_then(Value::as_i64).unwrap_or(2)
    }

    fn start_utc(&self) -> String {
        self.start.map(utc).unwrap_or_default()
    }

    pub fn local_start(&self) -> String {
        match (self.start, TimeZone::get(&self.timezone)) {
            (Some(t), Ok(tz)) => t.to_zoned(tz).strftime("%Y-%m-%d %H:%M").to_string(),
            (Some(t), Err(_)) => utc(t),
            _ => String::new(),
        }
    }

    fn host_emails(&self) -> Vec<String> {
        let mut out = vec![self.host_email.to_lowercase()];
        if let Some(alt) = self.settings.get("alternative_hosts").and_then(Value::as_str) {
            out.extend(alt.split([';', ',']).map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty()));
        }
        out
    }

    fn find(&self, email: &str) -> Option<usize> {
        let email = email.trim().to_lowercase();
        self.registrants.iter().position(|r| r.email.to_lowercase() == email)
    }
}

struct PageCursor {
    event: i64,
    status: String,
    offset: usize,
    page_size: usize,
    expires: Instant,
}

#[derive(Default)]
pub(crate) struct State {
    accounts: HashMap<String, Account>,
    pub events: HashMap<i64, Event>,
    windows: HashMap<(String, Label), VecDeque<Instant>>,
    day: i64,
    label_daily: HashMap<(String, Label), u32>,
    host_daily: HashMap<String, u32>,
    add_daily: HashMap<String, u32>,
    status_daily: HashMap<String, u32>,
    pages: HashMap<String, PageCursor>,
    next_id: i64,
}

fn utc(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn now_day() -> i64 {
    Timestamp::now().as_second().div_euclid(86_400)
}

fn next_midnight(day: i64) -> String {
    Timestamp::from_second((day + 1) * 86_400).map(utc).unwrap_or_default()
}

impl State {
    pub fn account_mut(&mut self, id: &str) -> &mut Account {
        self.accounts.entry(id.to_string()).or_default()
    }

    fn account(&self, id: &str) -> Account {
        self.accounts.get(id).cloned().unwrap_or_default()
    }

    pub fn reset_daily(&mut self) {
        self.label_daily.clear();
        self.host_daily.clear();
        self.add_daily.clear();
        self.status_daily.clear();
    }

    fn roll_day(&mut self) {
        let today = now_day();
        if self.day != today {
            self.day = today;
            self.reset_daily();
        }
    }

    pub fn registrant_views(&self, event_id: i64) -> Vec<RegistrantView> {
        self.events
            .get(&event_id)
            .map(|e| {
                e.registrants
                    .iter()
                    .map(|r| RegistrantView {
                        id: r.id.clone(),
                        email: r.email.clone(),
                        first_name: r.first_name.clone(),
                        last_name: r.last_name.clone(),
                        status: r.status.clone(),
                        join_url: r.join_url.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn event_views(&self) -> Vec<EventView> {
        let mut v: Vec<_> = self
            .events
            .values()
            .map(|e| EventView {
                id: e.id,
                webinar: e.webinar,
                account_id: e.account_id.clone(),
                topic: e.topic.clone(),
                start_time: e.start_utc(),
                timezone: e.timezone.clone(),
                approval_type: e.approval_type(),
                registrants: e.registrants.len(),
                duration: e.duration,
                settings: Value::Object(e.settings.clone()),
            })
            .collect();
        v.sort_by_key(|e| e.id);
        v
    }

    pub fn add_calls_for(&self, email: &str) -> u32 {
        let email = email.trim().to_lowercase();
        self.add_daily.iter().filter(|(k, _)| k.ends_with(&format!("|{email}"))).map(|(_, n)| *n).sum()
    }
}

/// What a route asks for.
#[derive(Debug, Clone)]
enum Op {
    GetUser(String),
    Create { webinar: bool, user: String },
    Get(bool, i64),
    Update(bool, i64),
    Delete(bool, i64),
    AddRegistrant(bool, i64),
    ListRegistrants(bool, i64),
    RegistrantStatus(bool, i64),
    DeleteRegistrant(bool, i64, String),
    Questions(bool, i64),
}

fn route(method: &Method, path: &str) -> Option<(Op, &'static str, Label)> {
    let segs: Vec<&str> = path.trim_start_matches("/v2/").trim_end_matches('/').split('/').collect();
    let id = |s: &str| s.parse::<i64>().ok();
    let kind = |s: &str| match s {
        "meetings" => Some(false),
        "webinars" => Some(true),
        _ => None,
    };
    let pick = |webinar: bool, m: &'static str, w: &'static str| if webinar { w } else { m };
    use Label::*;
    let m = method.as_str();
    let decoded = |s: &str| percent_decode(s);
    Some(match (m, segs.as_slice()) {
        ("GET", ["users", user]) => (Op::GetUser(decoded(user)), "user:read:user:admin", Light),
        ("POST", ["users", user, k]) => {
            let webinar = kind(k)?;
            let scope = pick(webinar, "meeting:write:meeting:admin", "webinar:write:webinar:admin");
            (Op::Create { webinar, user: decoded(user) }, scope, if webinar { Light } else { Medium })
        }
        ("GET", [k, e]) => {
            let w = kind(k)?;
            (Op::Get(w, id(e)?), pick(w, "meeting:read:meeting:admin", "webinar:read:webinar:admin"), Light)
        }
        ("PATCH", [k, e]) => {
            let w = kind(k)?;
            (Op::Update(w, id(e)?), pick(w, "meeting:update:meeting:admin", "webinar:update:webinar:admin"), Light)
        }
        ("DELETE", [k, e]) => {
            let w = kind(k)?;
            (Op::Delete(w, id(e)?), pick(w, "meeting:delete:meeting:admin", "webinar:delete:webinar:admin"), Light)
        }
        ("POST", [k, e, "registrants"]) => {
            let w = kind(k)?;
            (
                Op::AddRegistrant(w, id(e)?),
                pick(w, "meeting:write:registrant:admin", "webinar:write:registrant:admin"),
                Light,
            )
        }
        ("GET", [k, e, "registrants"]) => {
            let w = kind(k)?;
            (
                Op::ListRegistrants(w, id(e)?),
                pick(w, "meeting:read:list_registrants:admin", "webinar:read:list_registrants:admin"),
                Medium,
            )
        }
        ("PUT", [k, e, "registrants", "status"]) => {
            let w = kind(k)?;
            (
                Op::RegistrantStatus(w, id(e)?),
                pick(w, "meeting:update:registrant_status:admin", "webinar:update:registrant_status:admin"),
                Medium,
            )
        }
        ("GET", [k, e, "registrants", "questions"]) => {
            let w = kind(k)?;
            (
                Op::Questions(w, id(e)?),
                pick(
                    w,
                    "meeting:read:list_registration_questions:admin",
                    "webinar:read:list_registration_questions:admin",
                ),
                Light,
            )
        }
        ("DELETE", [k, e, "registrants", r]) => {
            let w = kind(k)?;
            (
                Op::DeleteRegistrant(w, id(e)?, decoded(r)),
                pick(w, "meeting:delete:registrant:admin", "webinar:delete:registrant:admin"),
                Light,
            )
        }
        _ => return None,
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or(""), 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An answer before it is sent.
struct Answer {
    status: u16,
    body: Option<Value>,
    headers: Vec<(String, String)>,
}

fn answer(status: u16, body: Value) -> Answer {
    Answer { status, body: Some(body), headers: Vec::new() }
}

fn no_content() -> Answer {
    Answer { status: 204, body: None, headers: Vec::new() }
}

fn error(status: u16, code: i64, message: impl Into<String>) -> Answer {
    answer(status, json!({"code": code, "message": message.into()}))
}

fn invalid(field: &str, message: &str) -> Answer {
    answer(400, json!({"code": 300, "message": "Validation Failed.", "errors": [{"field": field, "message": message}]}))
}

fn daily_429(message: String, day: i64, category: &str) -> Answer {
    let mut a = error(429, 429, message);
    a.headers = vec![
        ("X-RateLimit-Category".into(), category.into()),
        ("X-RateLimit-Type".into(), "Daily-limit".into()),
        ("Retry-After".into(), next_midnight(day)),
    ];
    a
}

fn not_found(webinar: bool, id: i64) -> Answer {
    error(404, 3001, format!("{} does not exist: {id}.", if webinar { "Webinar" } else { "Meeting" }))
}

pub(crate) async fn handle(
    AxumState(sb): AxumState<ZoomSandbox>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if sb.lock().down {
        // Down: Zoom's edge answers 503 with no body, before anything is processed.
        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "").into_response();
    }
    let request_body = String::from_utf8_lossy(&body).into_owned();
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let (ans, hold) = {
        let mut g = sb.lock();
        process(&mut g, &method, &path, &query, &headers, &request_body)
    };
    let text = ans.body.as_ref().map(Value::to_string).unwrap_or_default();
    let mut resp_headers = ans.headers.clone();
    if ans.body.is_some() {
        resp_headers.push(("Content-Type".into(), "application/json;charset=UTF-8".into()));
    }
    sb.lock().record(Exchange {
        method: method.as_str().to_string(),
        path,
        query,
        status: ans.status,
        request_body,
        response_body: text.clone(),
        response_headers: resp_headers.clone(),
    });
    // Recorded before any hold: a client that gives up closes the connection, and the
    // handler is dropped with it.
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

enum After {
    None,
    Fail500,
    Hold(Duration),
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
    g.api.roll_day();
    let Some((op, scope, label)) = route(method, path) else {
        return (error(404, 404, "The requested resource was not found."), None);
    };
    // The token, then its scopes.
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    let Some(token) = g.tokens.get(&bearer).filter(|t| t.expires > Instant::now()).cloned() else {
        return (error(401, 124, "Invalid access token."), None);
    };
    let user_scope = scope.trim_end_matches(":admin");
    let allowed = token.scopes.iter().any(|s| s == scope || (token.user_id.is_some() && s == user_scope));
    if !allowed {
        return (error(401, 4700, format!("Invalid access token, does not contain scopes:[{scope}].")), None);
    }
    let account_id = token.account_id.clone();
    let plan = g.api.account(&account_id).plan;
    // Per-second limit: a sliding 1000 ms window by arrival.
    let limit = label.per_second(plan);
    let now = Instant::now();
    let key = (account_id.clone(), label);
    let window = g.api.windows.entry(key.clone()).or_default();
    while window.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_millis(1000)) {
        window.pop_front();
    }
    if window.len() as u32 >= limit {
        g.stats.qps_429 += 1;
        let mut a =
            error(429, 429, "You have reached the maximum per-second rate limit for this API. Try again later.");
        a.headers = rate_headers(label, "QPS", limit, 0);
        a.headers.push(("X-RateLimit-Reset".into(), "1".into()));
        return (a, None);
    }
    window.push_back(now);
    let in_window = window.len() as u32;
    let peak = g.stats.max_in_any_second.entry((account_id.clone(), label.name().to_string())).or_default();
    *peak = (*peak).max(in_window);
    let remaining = limit - in_window;
    if let Some(cap) = label.daily(plan) {
        let day = g.api.day;
        let used = g.api.label_daily.entry(key).or_default();
        if *used >= cap {
            g.stats.daily_429 += 1;
            return (
                daily_429(
                    "You have reached the maximum daily rate limit for this API. Refer to the response header for details on when you can make another request.".into(),
                    day,
                    label.name(),
                ),
                None,
            );
        }
        *used += 1;
    }
    // Faults.
    let f = g.faults.clone();
    let mut after = After::None;
    if f.rate_429 + f.rate_500 + f.rate_timeout > 0.0 {
        let d = g.fault_draw();
        if d < f.rate_429 {
            g.stats.injected_429 += 1;
            let mut a =
                error(429, 429, "You have reached the maximum per-second rate limit for this API. Try again later.");
            a.headers = rate_headers(label, "QPS", limit, 0);
            a.headers.push(("X-RateLimit-Reset".into(), "1".into()));
            return (a, None);
        } else if d < f.rate_429 + f.rate_500 {
            if g.fault_draw() < 0.5 {
                g.stats.injected_500_before += 1;
                return (error(500, 500, "Internal Server Error"), None);
            }
            g.stats.injected_500_after += 1;
            after = After::Fail500;
        } else if d < f.rate_429 + f.rate_500 + f.rate_timeout {
            g.stats.injected_timeouts += 1;
            after = After::Hold(f.timeout_hold);
        }
    }
    let parsed: Option<Value> = if body.trim().is_empty() { None } else { serde_json::from_str(body).ok() };
    if !body.trim().is_empty() && parsed.is_none() {
        return (error(400, 300, "Request Body should be a valid JSON object."), None);
    }
    let mut a = run(g, op, &account_id, token.user_id.as_deref(), query, parsed.unwrap_or(Value::Null));
    if a.status < 300 {
        a.headers.extend(rate_headers(label, "QPS", limit, remaining));
    }
    match after {
        After::None => (a, None),
        After::Fail500 => (error(500, 500, "Internal Server Error"), None),
        After::Hold(d) => (a, Some(d)),
    }
}

fn rate_headers(label: Label, kind: &str, limit: u32, remaining: u32) -> Vec<(String, String)> {
    vec![
        ("X-RateLimit-Category".into(), label.name().into()),
        ("X-RateLimit-Type".into(), kind.into()),
        ("X-RateLimit-Limit".into(), limit.to_string()),
        ("X-RateLimit-Remaining".into(), remaining.to_string()),
    ]
}

fn query_param(query: &str, name: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn run(g: &mut Inner, op: Op, account: &str, token_user: Option<&str>, query: &str, body: Value) -> Answer {
    match op {
        Op::GetUser(user) => {
            let u = if user == "me" {
                match token_user {
                    Some(id) => g.user(account, id),
                    None => g.owner(account),
                }
            } else {
                g.user(account, &user)
            };
            let Some(u) = u else {
                return error(404, 1001, format!("User does not exist: {user}."));
            };
            answer(
                200,
                json!({
                    "id": u.id, "email": u.email, "first_name": u.first_name, "last_name": u.last_name,
                    "display_name": format!("{} {}", u.first_name, u.last_name),
                    "type": if u.licensed { 2 } else { 1 }, "account_id": u.account_id,
                    "timezone": "Asia/Tokyo", "language": "ja-JP", "status": "active", "verified": 1,
                    "role_name": if g.owner(account).is_some_and(|o| o.id == u.id) { "Owner" } else { "Member" },
                }),
            )
        }
        Op::Create { webinar, user } => create(g, account, webinar, &user, body),
        Op::Get(webinar, id) => match g.api.events.get(&id).filter(|e| e.webinar == webinar && e.account_id == account)
        {
            Some(e) => answer(200, event_json(e, &g.join_base, false, with_embed(g, account))),
            None => not_found(webinar, id),
        },
        Op::Update(webinar, id) => update(g, account, webinar, id, body),
        Op::Delete(webinar, id) => {
            if g.api.events.get(&id).is_some_and(|e| e.webinar == webinar && e.account_id == account) {
                g.api.events.remove(&id);
                no_content()
            } else {
                not_found(webinar, id)
            }
        }
        Op::AddRegistrant(webinar, id) => add_registrant(g, account, webinar, id, body),
        Op::ListRegistrants(webinar, id) => list_registrants(g, account, webinar, id, query),
        Op::RegistrantStatus(webinar, id) => registrant_status(g, account, webinar, id, body),
        Op::DeleteRegistrant(webinar, id, rid) => {
            let Some(e) = g.api.events.get_mut(&id).filter(|e| e.webinar == webinar && e.account_id == account) else {
                return not_found(webinar, id);
            };
            match e.registrants.iter().position(|r| r.id == rid) {
                Some(i) => {
                    e.registrants.remove(i);
                    no_content()
                }
                None => error(404, 3001, format!("Registrant does not exist: {rid}.")),
            }
        }
        Op::Questions(webinar, id) => {
            let Some(e) = g.api.events.get(&id).filter(|e| e.webinar == webinar && e.account_id == account) else {
                return not_found(webinar, id);
            };
            let custom: Vec<Value> = e
                .required_questions
                .iter()
                .map(|t| json!({"title": t, "type": "short", "required": true, "answers": []}))
                .collect();
            answer(
                200,
                json!({"questions": [{"field_name": "last_name", "required": false}], "custom_questions": custom}),
            )
        }
    }
}

/// `start_time` as Zoom reads it: `…Z` is UTC; without it, wall-clock time in `timezone`.
fn parse_start(s: &str, tz: &str) -> Option<Timestamp> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(t);
    }
    let dt: jiff::civil::DateTime = s.parse().ok()?;
    let zone = TimeZone::get(if tz.is_empty() { "UTC" } else { tz }).ok()?;
    dt.to_zoned(zone).ok().map(|z| z.timestamp())
}

fn host_daily_check(g: &mut Inner, host_id: &str) -> Option<Answer> {
    let day = g.api.day;
    let n = g.api.host_daily.entry(host_id.to_string()).or_default();
    if *n >= 100 {
        g.stats.daily_429 += 1;
        return Some(daily_429(
            "You have exceeded the daily rate limit (100) of Meeting Create/Update API requests permitted for this particular user. You can resume these API requests at GMT 00:00:00.".into(),
            day,
            "Light",
        ));
    }
    *n += 1;
    None
}

fn validate_schedule(body: &Value, timezone: &str) -> Result<Option<Option<Timestamp>>, Answer> {
    if let Some(topic) = body.get("topic") {
        match topic.as_str() {
            Some(t) if t.chars().count() <= 200 => {}
            _ => return Err(invalid("topic", "Topic must be a string of at most 200 characters.")),
        }
    }
    if let Some(d) = body.get("duration") {
        match d.as_i64() {
            Some(d) if (1..=1440).contains(&d) => {}
            _ => return Err(invalid("duration", "Duration must be between 1 and 1440 minutes.")),
        }
    }
    match body.get("start_time") {
        None => Ok(None),
        Some(v) => match v.as_str().and_then(|s| parse_start(s, timezone)) {
            Some(t) => Ok(Some(Some(t))),
            None => Err(invalid("start_time", "Invalid start_time.")),
        },
    }
}

fn create(g: &mut Inner, account: &str, webinar: bool, user: &str, body: Value) -> Answer {
    let Some(host) = (if user == "me" { g.owner(account) } else { g.user(account, user) }).cloned() else {
        return error(404, 1001, format!("User does not exist: {user}."));
    };
    if !body.is_object() && !body.is_null() {
        return error(400, 300, "Request Body should be a valid JSON object.");
    }
    if webinar && !host.webinar_license {
        return error(
            400,
            200,
            "Webinar plan is missing. You must subscribe to the webinar plan and enable webinar for this user in order to perform this action.",
        );
    }
    let timezone = body.get("timezone").and_then(Value::as_str).unwrap_or("").to_string();
    if !timezone.is_empty() && TimeZone::get(&timezone).is_err() {
        return invalid("timezone", "Invalid timezone.");
    }
    let start = match validate_schedule(&body, &timezone) {
        Ok(s) => s.flatten(),
        Err(a) => return a,
    };
    if let Some(a) = host_daily_check(g, &host.id) {
        return a;
    }
    let acct = g.api.account(account);
    let explicit = body.get("password").and_then(Value::as_str).unwrap_or("").to_string();
    if explicit.chars().count() > 10 {
        return invalid("password", "Passcode must be at most 10 characters.");
    }
    let default_flag = if webinar { "default_passcode" } else { "default_password" };
    let wants_default = body.get(default_flag).and_then(Value::as_bool).unwrap_or(true);
    let password = if !explicit.is_empty() {
        explicit
    } else if acct.require_passcode {
        // Required and locked on the account: Zoom generates one whatever `default_password`
        // says (NOTES §2.1).
        let _ = wants_default;
        format!("{:06}", g.next() % 1_000_000)
    } else {
        String::new()
    };
    let mut settings = Map::new();
    settings.insert("approval_type".into(), json!(2));
    settings.insert("auto_recording".into(), json!("none"));
    settings.insert("host_video".into(), json!(false));
    if !webinar {
        settings.insert("join_before_host".into(), json!(false));
        settings.insert("waiting_room".into(), json!(false));
        settings.insert("participant_video".into(), json!(false));
        settings.insert("mute_upon_entry".into(), json!(false));
        settings.insert("use_pmi".into(), json!(false));
    }
    settings.insert("registrants_email_notification".into(), json!(true));
    settings.insert("registrants_confirmation_email".into(), json!(true));
    settings.insert("meeting_authentication".into(), json!(false));
    if let Some(Value::Object(given)) = body.get("settings") {
        for (k, v) in given {
            settings.insert(k.clone(), v.clone());
        }
    }
    // A waiting room turns join-before-host off (NOTES §2.2).
    if settings.get("waiting_room") == Some(&json!(true)) {
        settings.insert("join_before_host".into(), json!(false));
    }
    let id = loop {
        let candidate = 80_000_000_000 + (g.next() % 9_999_999_999) as i64;
        if !g.api.events.contains_key(&candidate) {
            break candidate;
        }
    };
    let now = Timestamp::now();
    let event = Event {
        id,
        uuid: format!("{}==", g.token(22)),
        webinar,
        account_id: account.to_string(),
        host_id: host.id.clone(),
        host_email: host.email.clone(),
        topic: body
            .get("topic")
            .and_then(Value::as_str)
            .unwrap_or(if webinar { "Zoom Webinar" } else { "Zoom Meeting" })
            .to_string(),
        kind: body.get("type").and_then(Value::as_i64).unwrap_or(if webinar { 5 } else { 2 }),
        start,
        timezone: if timezone.is_empty() { "Asia/Tokyo".into() } else { timezone },
        duration: body.get("duration").and_then(Value::as_i64).unwrap_or(60),
        agenda: body.get("agenda").and_then(Value::as_str).unwrap_or("").to_string(),
        encrypted: if password.is_empty() { String::new() } else { g.token(32) },
        password,
        created_ms: now.as_millisecond(),
        created_at: utc(now),
        settings,
        registrants: Vec::new(),
        capacity: if webinar { 10_000 } else { 4_999 },
        required_questions: Vec::new(),
        start_token: g.token(40),
        registration_token: g.token(22),
    };
    let json = event_json(&event, &g.join_base, true, acct.embed_passcode);
    g.api.next_id += 1;
    g.api.events.insert(id, event);
    answer(201, json)
}

fn join_url(e: &Event, base: &str, embed: bool) -> String {
    let mut url = format!("{base}/{}/{}", if e.webinar { "w" } else { "j" }, e.id);
    if embed && !e.encrypted.is_empty() {
        url.push_str(&format!("?pwd={}", e.encrypted));
    }
    url
}

/// A meeting or webinar as create (201) or get (200) answers it; the two operations' schemas
/// differ (NOTES §2.3, §3), and so do meetings and webinars.
fn event_json(e: &Event, base: &str, created: bool, embed: bool) -> Value {
    let mut v = json!({
        "id": e.id,
        "host_email": e.host_email,
        "topic": e.topic,
        "type": e.kind,
        "duration": e.duration,
        "timezone": e.timezone,
        "agenda": e.agenda,
        "created_at": e.created_at,
        "start_url": format!("{base}/s/{}?zak={}", e.id, e.start_token),
        "join_url": join_url(e, base, embed),
        "password": e.password,
        "settings": Value::Object(e.settings.clone()),
    });
    let o = v.as_object_mut().expect("an object");
    if e.start.is_some() {
        o.insert("start_time".into(), json!(e.start_utc()));
    }
    if !e.webinar && !created {
        o.insert("uuid".into(), json!(e.uuid));
        o.insert("host_id".into(), json!(e.host_id));
        o.insert("status".into(), json!("waiting"));
    }
    if e.webinar {
        o.insert("uuid".into(), json!(e.uuid));
        o.insert("host_id".into(), json!(e.host_id));
    }
    if !e.encrypted.is_empty() {
        o.insert(if e.webinar { "encrypted_passcode" } else { "encrypted_password" }.into(), json!(e.encrypted));
    }
    if !e.webinar && created && matches!(e.approval_type(), 0 | 1) {
        o.insert("registration_url".into(), json!(format!("{base}/meeting/register/{}", e.registration_token)));
    }
    v
}

fn with_embed(g: &Inner, account: &str) -> bool {
    g.api.accounts.get(account).map(|a| a.embed_passcode).unwrap_or(false)
}

fn update(g: &mut Inner, account: &str, webinar: bool, id: i64, body: Value) -> Answer {
    let Some(host_id) =
        g.api.events.get(&id).filter(|e| e.webinar == webinar && e.account_id == account).map(|e| e.host_id.clone())
    else {
        return not_found(webinar, id);
    };
    let timezone = body
        .get("timezone")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| g.api.events[&id].timezone.clone());
    let start = match validate_schedule(&body, &timezone) {
        Ok(s) => s,
        Err(a) => return a,
    };
    if let Some(a) = host_daily_check(g, &host_id) {
        return a;
    }
    let e = g.api.events.get_mut(&id).expect("checked above");
    if let Some(t) = body.get("topic").and_then(Value::as_str) {
        e.topic = t.to_string();
    }
    if let Some(a) = body.get("agenda").and_then(Value::as_str) {
        e.agenda = a.to_string();
    }
    if let Some(d) = body.get("duration").and_then(Value::as_i64) {
        e.duration = d;
    }
    e.timezone = timezone;
    // Zoom ignores a start time in the past (MS:meetingUpdate).
    if let Some(Some(t)) = start
        && t > Timestamp::now()
    {
        e.start = Some(t);
    }
    if let Some(p) = body.get("password").and_then(Value::as_str) {
        e.password = p.to_string();
    }
    if let Some(Value::Object(given)) = body.get("settings") {
        // Registration needs a fixed, future start: otherwise Zoom answers 204 and drops the
        // change (observed, NOTES §4).
        let fixed_future = matches!(e.kind, 2 | 5 | 8 | 9) && e.start.is_some_and(|t| t > Timestamp::now());
        for (k, v) in given {
            if k == "approval_type" && !fixed_future {
                continue;
            }
            e.settings.insert(k.clone(), v.clone());
        }
    }
    no_content()
}

fn email_ok(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else { return false };
    !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !s.contains(char::is_whitespace)
}

fn add_registrant(g: &mut Inner, account: &str, webinar: bool, id: i64, body: Value) -> Answer {
    let Some(event) = g.api.events.get(&id).filter(|e| e.webinar == webinar && e.account_id == account) else {
        return not_found(webinar, id);
    };
    if !matches!(event.approval_type(), 0 | 1) {
        return if webinar {
            error(400, 3000, "This webinar does not have registration as required")
        } else {
            error(404, 3000, format!("Registration has not been enabled for this meeting: {id}."))
        };
    }
    let email = body.get("email").and_then(Value::as_str).unwrap_or("").trim().to_string();
    let first_name = body.get("first_name").and_then(Value::as_str).unwrap_or("").to_string();
    // Every add that reaches the rules counts toward the email's 3 per day (NOTES §7).
    let day = g.api.day;
    let counter_key = format!("{account}|{}", email.to_lowercase());
    let used = g.api.add_daily.entry(counter_key).or_default();
    if *used >= 3 {
        g.stats.daily_429 += 1;
        return daily_429(
            format!(
                "You have exceeded the daily rate limit of (3) for Add {} registrant API requests for the registrant ({email}). You can resume these API requests at GMT 00:00:00.",
                if webinar { "webinar" } else { "meeting" }
            ),
            day,
            "Light",
        );
    }
    *used += 1;
    if first_name.is_empty() || first_name.chars().count() > 64 {
        return invalid("first_name", "First name is required (at most 64 characters).");
    }
    if email.chars().count() > 128 || !email_ok(&email) {
        return invalid("email", "Invalid field.");
    }
    let event = g.api.events.get(&id).expect("checked above");
    if event.host_emails().contains(&email.to_lowercase()) {
        return error(400, 3027, "Host cannot register");
    }
    if let Some(i) = event.find(&email) {
        let r = &event.registrants[i];
        if r.status == "denied" {
            // (observed) a cancelled or denied email cannot register again.
            return error(400, 3000, "Registrant has been denied for this event.");
        }
        // Zoom documents no error for a repeated email: it answers with the same registration.
        return answer(201, added_json(event, r));
    }
    if webinar && event.start.is_some_and(|t| t + jiff::SignedDuration::from_mins(event.duration) < Timestamp::now()) {
        return error(400, 3038, "Webinar is over, you cannot register now");
    }
    let active = event.registrants.iter().filter(|r| r.status != "denied").count() as u32;
    if active >= event.capacity {
        return if webinar {
            error(400, 3035, "Webinar has reached maximum attendee capacity.")
        } else {
            error(400, 3043, "Meeting has reached maximum attendee capacity.")
        };
    }
    let answers: Vec<Value> = body.get("custom_questions").and_then(Value::as_array).cloned().unwrap_or_default();
    for title in &event.required_questions {
        let answered = answers.iter().any(|a| {
            a.get("title").and_then(Value::as_str) == Some(title.as_str())
                && a.get("value").and_then(Value::as_str).is_some_and(|v| !v.is_empty())
        });
        if !answered {
            return invalid("custom_questions", &format!("The question \"{title}\" is required."));
        }
    }
    let approved =
        event.approval_type() == 0 || (!webinar && body.get("auto_approve").and_then(Value::as_bool) == Some(true));
    let embed = with_embed(g, account);
    let rid = g.token(22);
    let tk = g.token(32);
    let pin = 100_000_000 + (g.next() % 900_000_000) as i64;
    let base = g.join_base.clone();
    let event = g.api.events.get_mut(&id).expect("checked above");
    let mut url = format!("{base}/w/{}?tk={tk}", event.id);
    if embed && !event.encrypted.is_empty() {
        url.push_str(&format!("&pwd={}", event.encrypted));
    }
    let r = Registrant {
        id: rid,
        email,
        first_name,
        last_name: body.get("last_name").and_then(Value::as_str).unwrap_or("").to_string(),
        status: if approved { "approved" } else { "pending" }.into(),
        join_url: url,
        create_time: utc(Timestamp::now()),
        pin,
        custom_questions: answers,
    };
    let json = added_json(event, &r);
    event.registrants.push(r);
    answer(201, json)
}

fn added_json(e: &Event, r: &Registrant) -> Value {
    let mut v = json!({"id": e.id, "registrant_id": r.id, "topic": e.topic});
    let o = v.as_object_mut().expect("an object");
    if e.start.is_some() {
        o.insert("start_time".into(), json!(e.start_utc()));
    }
    if r.status == "approved" {
        o.insert("join_url".into(), json!(r.join_url));
    }
    if !e.webinar {
        o.insert("participant_pin_code".into(), json!(r.pin));
    }
    v
}

fn list_registrants(g: &mut Inner, account: &str, webinar: bool, id: i64, query: &str) -> Answer {
    let Some(e) = g.api.events.get(&id).filter(|e| e.webinar == webinar && e.account_id == account) else {
        return not_found(webinar, id);
    };
    if !matches!(e.approval_type(), 0 | 1) {
        return error(
            400,
            300,
            format!(
                "Registration has not been enabled for this {}: {id}.",
                if webinar { "webinar" } else { "meeting" }
            ),
        );
    }
    let (status, offset, page_size) = match query_param(query, "next_page_token").filter(|t| !t.is_empty()) {
        // A token may be used again until it expires (15 minutes), as when an answer was lost.
        Some(t) => match g.api.pages.get(&t) {
            Some(c) if c.event == id && c.expires > Instant::now() => (c.status.clone(), c.offset, c.page_size),
            _ => return error(400, 300, "The next page token is invalid or expired."),
        },
        None => {
            let status = query_param(query, "status").unwrap_or_else(|| "approved".into());
            if !matches!(status.as_str(), "approved" | "pending" | "denied") {
                return invalid("status", "Invalid status.");
            }
            let size = query_param(query, "page_size").and_then(|s| s.parse::<usize>().ok()).unwrap_or(30);
            (status, 0, size.clamp(1, 300))
        }
    };
    let e = g.api.events.get(&id).expect("checked above");
    let matching: Vec<&Registrant> = e.registrants.iter().filter(|r| r.status == status).collect();
    let total = matching.len();
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(page_size)
        .map(|r| {
            let mut v = json!({
                "id": r.id, "email": r.email, "first_name": r.first_name, "last_name": r.last_name,
                "status": r.status, "create_time": r.create_time, "custom_questions": r.custom_questions,
            });
            let o = v.as_object_mut().expect("an object");
            if r.status == "approved" {
                o.insert("join_url".into(), json!(r.join_url));
            }
            if !webinar {
                o.insert("participant_pin_code".into(), json!(r.pin));
            }
            v
        })
        .collect();
    let next = if offset + page_size < total {
        let now = Instant::now();
        g.api.pages.retain(|_, c| c.expires > now);
        let t = g.token(32);
        g.api.pages.insert(
            t.clone(),
            PageCursor {
                event: id,
                status,
                offset: offset + page_size,
                page_size,
                expires: Instant::now() + Duration::from_secs(900),
            },
        );
        t
    } else {
        String::new()
    };
    answer(
        200,
        json!({
            "page_count": total.div_ceil(page_size).max(1),
            "page_size": page_size,
            "total_records": total,
            "next_page_token": next,
            "registrants": page,
        }),
    )
}

fn registrant_status(g: &mut Inner, account: &str, webinar: bool, id: i64, body: Value) -> Answer {
    let Some(e) = g.api.events.get(&id).filter(|e| e.webinar == webinar && e.account_id == account) else {
        return not_found(webinar, id);
    };
    if !matches!(e.approval_type(), 0 | 1) {
        return error(400, 300, "Registration has not been enabled.");
    }
    let new_status = match body.get("action").and_then(Value::as_str) {
        Some("approve") => "approved",
        Some("cancel" | "deny") => "denied",
        _ => return invalid("action", "Invalid action."),
    };
    let Some(list) = body.get("registrants").and_then(Value::as_array).cloned() else {
        return invalid("registrants", "Registrants are required.");
    };
    let day = g.api.day;
    let mut targets = Vec::new();
    for item in &list {
        let by_id = item.get("id").and_then(Value::as_str);
        let by_email = item.get("email").and_then(Value::as_str);
        let e = g.api.events.get(&id).expect("checked above");
        let pos = e.registrants.iter().position(|r| {
            by_id.is_some_and(|i| i == r.id) || by_email.is_some_and(|m| m.eq_ignore_ascii_case(&r.email))
        });
        let Some(pos) = pos else { continue };
        let key = format!("{account}|{id}|{}", e.registrants[pos].email.to_lowercase());
        let n = g.api.status_daily.entry(key).or_default();
        if *n >= 10 {
            g.stats.daily_429 += 1;
            return daily_429(
                "You have exceeded the daily rate limit of (10) for Update registrant's status API requests for this registrant.".into(),
                day,
                "Medium",
            );
        }
        *n += 1;
        targets.push(pos);
    }
    let e = g.api.events.get_mut(&id).expect("checked above");
    for pos in targets {
        e.registrants[pos].status = new_status.to_string();
    }
    no_content()
}
