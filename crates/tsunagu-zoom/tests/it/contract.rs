//! Contract checks: what the client sends and what the sandbox answers, validated with a JSON
//! Schema validator (`jsonschema`) against Zoom's official OpenAPI schemas. The operations we
//! call are copied verbatim from `../shared/specs/zoom/*.openapi.json` into
//! `tests/spec/zoom-operations.json` by `scripts/extract-zoom-spec.py` (so any clone can run
//! this); [`the_copy_matches_the_official_files`] checks the copy whenever the originals are
//! present.
//!
//! How OpenAPI 3.0 becomes strict JSON Schema (every object closed, `allOf` merged, `oneOf` as
//! `anyOf`, `nullable`) is described in `tsunagu-contract`, shared with the LINE tests.

use std::sync::LazyLock;

use serde_json::{Value, json};
pub use tsunagu_contract::Exchange;
use tsunagu_contract::{Body, Spec};

/// The copied operations as one OpenAPI document (their paths are relative to `/v2`).
static ZOOM: &LazyLock<Spec> = &tsunagu_contract::zoom::SPEC;
const SPEC: &str = include_str!("../spec/zoom-operations.json");

/// The operation id for a method and a path (with or without `/v2`).
pub fn operation_for(method: &str, path: &str) -> Option<&'static str> {
    ZOOM.operation_for(method, path).map(|o| o.id.as_str())
}

pub fn request_schema_errors(operation_id: &str, body: &Value) -> Vec<String> {
    ZOOM.errors(operation_id, Body::Request, body)
        .unwrap_or_else(|| vec![format!("{operation_id} takes no request body")])
}

pub fn response_schema_errors(operation_id: &str, status: u16, body: &Value) -> Vec<String> {
    ZOOM.errors(operation_id, Body::Response(status), body)
        .unwrap_or_else(|| vec![format!("{operation_id} declares no JSON body for {status}")])
}

/// Every problem of one exchange.
pub fn check(ex: &Exchange<'_>) -> Vec<String> {
    tsunagu_contract::zoom::check(ex)
}

pub fn assert_all<'a>(exchanges: impl IntoIterator<Item = Exchange<'a>>) {
    tsunagu_contract::zoom::assert_all(exchanges);
}

#[test]
fn the_validator_passes_good_bodies_and_catches_bad_ones() {
    let good = json!({
        "topic": "入門", "type": 2, "start_time": "2026-12-01T01:00:00Z", "timezone": "Asia/Tokyo",
        "duration": 60, "settings": {"approval_type": 0, "waiting_room": true, "join_before_host": false, "auto_recording": "none"}
    });
    assert_eq!(request_schema_errors("meetingCreate", &good), Vec::<String>::new());
    let mut wrong_type = good.clone();
    wrong_type["duration"] = json!("60");
    assert!(!request_schema_errors("meetingCreate", &wrong_type).is_empty());
    let mut typo = good.clone();
    typo["settings"]["wating_room"] = json!(true);
    assert!(!request_schema_errors("meetingCreate", &typo).is_empty(), "strict: unknown fields are errors");
    assert!(
        !request_schema_errors("meetingRegistrantCreate", &json!({"first_name": "A"})).is_empty(),
        "email required"
    );
    assert!(
        request_schema_errors("meetingRegistrantCreate", &json!({"first_name": "A", "email": "a@example.com"}))
            .is_empty()
    );
    let added = json!({"id": 85746065432_i64, "registrant_id": "abc", "join_url": "https://zoom.us/w/1?tk=x", "topic": "t", "start_time": "2026-12-01T01:00:00Z", "participant_pin_code": 123});
    assert!(response_schema_errors("meetingRegistrantCreate", 201, &added).is_empty());
    let mut bad_id = added.clone();
    bad_id["id"] = json!("abc");
    assert!(!response_schema_errors("meetingRegistrantCreate", 201, &bad_id).is_empty());
    let mut bad_time = added.clone();
    bad_time["start_time"] = json!("tomorrow");
    assert!(!response_schema_errors("meetingRegistrantCreate", 201, &bad_time).is_empty(), "date-time checked");
}

#[test]
fn paths_map_to_operations_and_shapes_are_checked() {
    assert_eq!(operation_for("PUT", "/v2/meetings/85746065432/registrants/status"), Some("meetingRegistrantStatus"));
    assert_eq!(operation_for("GET", "/v2/meetings/1/registrants/questions"), Some("meetingRegistrantsQuestionsGet"));
    assert_eq!(operation_for("DELETE", "/v2/meetings/1/registrants/abc"), Some("meetingregistrantdelete"));
    assert_eq!(operation_for("GET", "/v2/users/me"), Some("user"));
    assert_eq!(operation_for("GET", "/v2/nothing/here"), None);
    let ex = |status, response_body| Exchange {
        method: "DELETE",
        path: "/v2/meetings/1",
        status,
        request_body: "",
        response_body,
    };
    assert!(check(&ex(204, "")).is_empty());
    assert!(!check(&ex(204, "{}")).is_empty(), "a 204 has no body");
    assert!(check(&ex(404, r#"{"code":3001,"message":"Meeting does not exist: 1."}"#)).is_empty());
    assert!(!check(&ex(404, r#"{"error":"x"}"#)).is_empty());
}

#[test]
fn every_schema_of_every_operation_compiles() {
    assert!(ZOOM.compile_everything() >= 19);
}

/// The copy in `tests/spec` is the official text (checked when `../shared` is present).
#[test]
fn the_copy_matches_the_official_files() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/specs/zoom");
    if !dir.exists() {
        eprintln!("{} not present: copy not re-checked", dir.display());
        return;
    }
    let spec: Value = serde_json::from_str(SPEC).unwrap();
    for (file, _) in spec["sources"].as_object().unwrap() {
        let full: Value = serde_json::from_slice(&std::fs::read(dir.join(file)).unwrap()).unwrap();
        for (id, o) in spec["operations"].as_object().unwrap().iter().filter(|(_, o)| o["source"] == json!(file)) {
            let method = o["method"].as_str().unwrap().to_lowercase();
            let official = &full["paths"][o["path"].as_str().unwrap()][&method];
            assert_eq!(official, &o["operation"], "{id} differs from {file}: run scripts/extract-zoom-spec.py");
        }
    }
}
