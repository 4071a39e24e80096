//! Contract checks: what the client sends, what the LINE sandbox answers and the webhooks it
//! sends, validated against LINE's official OpenAPI documents (`messaging-api.yml`,
//! `channel-access-token.yml`, `webhook.yml`) with `tsunagu-contract` (how OpenAPI becomes JSON
//! Schema, strictly, is described there). The documents are converted unchanged from
//! `../shared/specs/line/*.yml` into `tests/spec/line-openapi.json` by
//! `scripts/extract-line-spec.py`, so any clone can run this; [`the_copy_is_of_the_official_files`]
//! checks the copy's source hashes whenever the originals are present.
//!
//! LINE Login's endpoints (`/oauth2/v2.1/token` with a code, `/v2/profile`,
//! `/friendship/v1/status`) are in none of these documents; `login.rs` checks them by behaviour.

use std::sync::LazyLock;

use serde_json::{Value, json};
use sha2::Digest;
use tsunagu_contract::{Body, Exchange, Spec};

const SPEC: &str = include_str!("../spec/line-openapi.json");

pub static LINE: LazyLock<Spec> = LazyLock::new(|| {
    let spec: Value = serde_json::from_str(SPEC).expect("tests/spec/line-openapi.json is JSON");
    Spec::new(spec["documents"].as_object().expect("documents").iter().map(|(n, d)| (n.clone(), d.clone())).collect())
});

/// LINE's error answers: the Messaging API's `ErrorResponse` (`message`, `details`), the token
/// endpoints' `{error, error_description}`.
fn error_shape(ex: &Exchange<'_>) -> Option<String> {
    let body: Value = match serde_json::from_str(ex.response_body) {
        Ok(v) => v,
        Err(_) => return Some(format!("error answer is not JSON: {}", tsunagu_contract::excerpt(ex.response_body))),
    };
    let token_endpoint = ex.path.starts_with("/oauth2/") || ex.path.starts_with("/v2/oauth/");
    let (doc, component) = if token_endpoint {
        ("channel-access-token.yml", "ErrorResponse")
    } else {
        ("messaging-api.yml", "ErrorResponse")
    };
    let errors = LINE.component_errors(doc, component, &body);
    let required = if token_endpoint { body["error"].is_string() } else { body["message"].is_string() };
    match (errors.is_empty(), required) {
        (true, true) => None,
        _ => Some(format!("error answer is not LINE's {component} ({errors:?})")),
    }
}

/// Webhooks the sandbox sent are recorded as `POST /callback` (webhook.yml's operation); their
/// bodies are checked, the bot server's answer is ours, not LINE's.
fn check(ex: &Exchange<'_>) -> Vec<String> {
    if ex.path == "/callback" {
        let body: Value = serde_json::from_str(ex.request_body).unwrap_or_default();
        return LINE.errors("callback", Body::Request, &body).unwrap_or_default();
    }
    LINE.check(ex, &error_shape)
}

pub fn assert_all<'a>(exchanges: impl IntoIterator<Item = Exchange<'a>>) -> usize {
    tsunagu_contract::assert_all_with(exchanges, check)
}

fn push_errors(body: Value) -> Vec<String> {
    LINE.errors("pushMessage", Body::Request, &body).expect("push has a request schema")
}

#[test]
fn the_validator_passes_good_messages_and_catches_bad_ones() {
    let to = format!("U{}", "a".repeat(32));
    let good = json!({"to": to, "messages": [
        {"type": "text", "text": "今日のレッスンです"},
        {"type": "image", "originalContentUrl": "https://example.com/a.jpg", "previewImageUrl": "https://example.com/a-p.jpg"},
        {"type": "video", "originalContentUrl": "https://example.com/v.mp4", "previewImageUrl": "https://example.com/v.jpg"},
        {"type": "audio", "originalContentUrl": "https://example.com/a.m4a", "duration": 60000}
    ]});
    assert_eq!(push_errors(good.clone()), Vec::<String>::new());
    let mut no_text = good.clone();
    no_text["messages"][0] = json!({"type": "text"});
    assert!(!push_errors(no_text).is_empty(), "a text message needs its text");
    let mut unknown = good.clone();
    unknown["messages"][0] = json!({"type": "telegram", "text": "x"});
    assert!(!push_errors(unknown).is_empty(), "only LINE's message types");
    let mut typo = good.clone();
    typo["messages"][1]["previewImageURL"] = json!("https://example.com/a-p.jpg");
    assert!(!push_errors(typo).is_empty(), "strict: unknown fields are errors");
    let mut no_duration = good.clone();
    no_duration["messages"][3].as_object_mut().unwrap().remove("duration");
    assert!(!push_errors(no_duration).is_empty(), "audio needs its duration");
    let mut six = good.clone();
    six["messages"] = json!([{"type": "text", "text": "1"}, {"type": "text", "text": "2"}, {"type": "text", "text": "3"},
        {"type": "text", "text": "4"}, {"type": "text", "text": "5"}, {"type": "text", "text": "6"}]);
    assert!(!push_errors(six).is_empty(), "at most five messages");
    let sent = json!({"sentMessages": [{"id": "461230966842064897", "quoteToken": "IStG5h1Tz7b"}]});
    assert!(LINE.errors("pushMessage", Body::Response(200), &sent).unwrap().is_empty());
    assert!(!LINE.errors("pushMessage", Body::Response(200), &json!({"sent": []})).unwrap().is_empty());
}

#[test]
fn webhook_events_are_checked_by_type() {
    let src = json!({"type": "user", "userId": format!("U{}", "c".repeat(32))});
    let follow = json!({"destination": format!("U{}", "b".repeat(32)), "events": [{
        "type": "follow", "mode": "active", "timestamp": 1_700_000_000_000_i64, "source": src,
        "webhookEventId": "01FZ74A0TDDPYRVKNK77XKC3ZR", "deliveryContext": {"isRedelivery": false},
        "replyToken": "b60d432864f44d079f6d8efe86cf404b", "follow": {"isUnblocked": false}
    }]});
    assert_eq!(LINE.errors("callback", Body::Request, &follow).unwrap(), Vec::<String>::new());
    let mut no_follow_detail = follow.clone();
    no_follow_detail["events"][0].as_object_mut().unwrap().remove("follow");
    assert!(
        !LINE.errors("callback", Body::Request, &no_follow_detail).unwrap().is_empty(),
        "follow carries isUnblocked"
    );
    let mut bad_mode = follow.clone();
    bad_mode["events"][0]["mode"] = json!("sleeping");
    assert!(!LINE.errors("callback", Body::Request, &bad_mode).unwrap().is_empty());
}

#[test]
fn paths_map_to_operations_and_errors_are_checked() {
    let id = |m, p| LINE.operation_for(m, p).map(|o| o.id.as_str());
    assert_eq!(id("POST", "/v2/bot/message/push"), Some("pushMessage"));
    assert_eq!(id("GET", "/v2/bot/message/quota/consumption"), Some("getMessageQuotaConsumption"));
    assert_eq!(id("GET", "/v2/bot/profile/Uabc"), Some("getProfile"));
    assert_eq!(id("POST", "/oauth2/v3/token"), Some("issueStatelessChannelToken"));
    assert_eq!(id("POST", "/v2/bot/nothing"), None);
    let ex = |status, response_body| Exchange {
        method: "GET",
        path: "/v2/bot/info",
        status,
        request_body: "",
        response_body,
    };
    assert!(check(&ex(401, r#"{"message":"Authentication failed. Confirm that the access token in the authorization header is valid."}"#)).is_empty());
    assert!(!check(&ex(401, r#"{"error":"x"}"#)).is_empty(), "the Messaging API answers errors with a message");
    assert!(!check(&ex(200, "")).is_empty(), "bot info has a body");
    let token = Exchange {
        method: "POST",
        path: "/oauth2/v3/token",
        status: 400,
        request_body: "grant_type=client_credentials&client_id=1&client_secret=x",
        response_body: r#"{"error":"invalid_client","error_description":"invalid client_secret"}"#,
    };
    assert!(check(&token).is_empty());
    let typo = Exchange { request_body: "grant_type=client_credentials&client_id=1&clientsecret=x", ..token };
    assert!(!check(&typo).is_empty(), "form fields are checked too");
}

#[test]
fn every_schema_of_every_operation_compiles() {
    assert!(LINE.compile_everything() > 100);
}

/// The copy in `tests/spec` was made from the official files (checked when `../shared` is present).
#[test]
fn the_copy_is_of_the_official_files() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/specs/line");
    if !dir.exists() {
        eprintln!("{} not present: copy not re-checked", dir.display());
        return;
    }
    let spec: Value = serde_json::from_str(SPEC).unwrap();
    for (file, sha) in spec["sources"].as_object().unwrap() {
        let now = hex(&sha2::Sha256::digest(std::fs::read(dir.join(file)).unwrap()));
        assert_eq!(Some(now.as_str()), sha.as_str(), "{file} changed: run scripts/extract-line-spec.py");
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
