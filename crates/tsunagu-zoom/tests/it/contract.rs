//! Contract checks: what the client sends and what the sandbox answers, validated with a JSON
//! Schema validator (`jsonschema`) against Zoom's official OpenAPI schemas. The operations we
//! call are copied verbatim from `../shared/specs/zoom/*.openapi.json` into
//! `tests/spec/zoom-operations.json` by `scripts/extract-zoom-spec.py` (so any clone can run
//! this); [`the_copy_matches_the_official_files`] checks the copy whenever the originals are
//! present.
//!
//! OpenAPI 3.0 → JSON Schema: `nullable: true` allows `null`; `allOf` branches are merged into
//! one object; `oneOf` becomes `anyOf` (Zoom's alternatives overlap); `example`, `x-*` and
//! other annotations are dropped; formats are checked where they are standard (`date-time`,
//! `email`). Strict mode: every object schema with `properties` and no `additionalProperties`
//! gets `additionalProperties: false`, so a field the official schema does not define (a typo
//! in what we send, a field the sandbox invents) is an error.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use serde_json::{Map, Value, json};

const SPEC: &str = include_str!("../spec/zoom-operations.json");

struct Operation {
    id: String,
    method: String,
    segments: Vec<String>,
    raw: Value,
}

static OPERATIONS: LazyLock<Vec<Operation>> = LazyLock::new(|| {
    let spec: Value = serde_json::from_str(SPEC).expect("tests/spec/zoom-operations.json is JSON");
    spec["operations"]
        .as_object()
        .expect("operations")
        .iter()
        .map(|(id, o)| Operation {
            id: id.clone(),
            method: o["method"].as_str().expect("method").to_string(),
            segments: o["path"].as_str().expect("path").trim_matches('/').split('/').map(str::to_string).collect(),
            raw: o["operation"].clone(),
        })
        .collect()
});

type Validators = HashMap<(String, String), std::sync::Arc<jsonschema::Validator>>;
static VALIDATORS: LazyLock<Mutex<Validators>> = LazyLock::new(Mutex::default);

/// One recorded request and its answer.
pub struct Exchange<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub request_body: &'a str,
    pub response_body: &'a str,
}

/// The operation id for a method and a path (with or without `/v2`); literal segments win over
/// parameters (`/registrants/status` is not `/registrants/{registrantId}`).
pub fn operation_for(method: &str, path: &str) -> Option<&'static str> {
    let path = path.strip_prefix("/v2").unwrap_or(path);
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    OPERATIONS
        .iter()
        .filter(|o| o.method.eq_ignore_ascii_case(method) && o.segments.len() == segs.len())
        .filter(|o| o.segments.iter().zip(&segs).all(|(t, s)| t.starts_with('{') || t == s))
        .max_by_key(|o| o.segments.iter().filter(|t| !t.starts_with('{')).count())
        .map(|o| o.id.as_str())
}

fn operation(id: &str) -> &'static Operation {
    OPERATIONS.iter().find(|o| o.id == id).unwrap_or_else(|| panic!("operation {id} is not in the spec copy"))
}

const DROP: &[&str] =
    &["example", "examples", "xml", "discriminator", "readOnly", "writeOnly", "deprecated", "externalDocs"];

/// Merge `allOf` branches (recursively) into one object schema.
fn merge_all_of(branches: &[Value]) -> Value {
    let mut properties = Map::new();
    let mut required: Vec<Value> = Vec::new();
    let mut rest = Map::new();
    for b in branches {
        let b = match b.get("allOf").and_then(Value::as_array) {
            Some(inner) => {
                let mut merged = merge_all_of(inner);
                if let (Some(m), Some(o)) = (merged.as_object_mut(), b.as_object()) {
                    for (k, v) in o {
                        if k != "allOf" && !m.contains_key(k) {
                            m.insert(k.clone(), v.clone());
                        }
                    }
                }
                merged
            }
            None => b.clone(),
        };
        if let Some(o) = b.as_object() {
            for (k, v) in o {
                match k.as_str() {
                    "properties" => {
                        if let Some(p) = v.as_object() {
                            properties.extend(p.clone());
                        }
                    }
                    "required" => required.extend(v.as_array().cloned().unwrap_or_default()),
                    _ => {
                        rest.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
        }
    }
    if !properties.is_empty() {
        rest.insert("properties".into(), Value::Object(properties));
        rest.insert("type".into(), json!("object"));
    }
    if !required.is_empty() {
        rest.insert("required".into(), Value::Array(required));
    }
    Value::Object(rest)
}

/// OpenAPI 3.0 schema → strict JSON Schema.
fn convert(schema: &Value) -> Value {
    let Some(obj) = schema.as_object() else { return schema.clone() };
    let merged;
    let obj = match obj.get("allOf").and_then(Value::as_array) {
        Some(branches) => {
            let mut m = merge_all_of(branches);
            for (k, v) in obj {
                if k != "allOf" {
                    m.as_object_mut().expect("object").entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            merged = m;
            merged.as_object().expect("object")
        }
        None => obj,
    };
    let mut out = Map::new();
    for (k, v) in obj {
        if DROP.contains(&k.as_str()) || k.starts_with("x-") || k == "nullable" {
            continue;
        }
        let v = match k.as_str() {
            "properties" => Value::Object(
                v.as_object().map(|p| p.iter().map(|(n, s)| (n.clone(), convert(s))).collect()).unwrap_or_default(),
            ),
            "items" | "not" => convert(v),
            "additionalProperties" if v.is_object() => convert(v),
            "oneOf" | "anyOf" => {
                Value::Array(v.as_array().map(|a| a.iter().map(convert).collect()).unwrap_or_default())
            }
            "format" => match v.as_str() {
                Some("date-time" | "email") => v.clone(),
                _ => continue,
            },
            _ => v.clone(),
        };
        let key = if k == "oneOf" { "anyOf".to_string() } else { k.clone() };
        out.insert(key, v);
    }
    if out.contains_key("properties") && !out.contains_key("additionalProperties") {
        out.insert("additionalProperties".into(), json!(false));
    }
    let converted = Value::Object(out);
    if obj.get("nullable") == Some(&json!(true)) { json!({"anyOf": [converted, {"type": "null"}]}) } else { converted }
}

fn validator(op: &Operation, which: &str) -> Option<std::sync::Arc<jsonschema::Validator>> {
    let key = (op.id.clone(), which.to_string());
    if let Some(v) = VALIDATORS.lock().unwrap().get(&key) {
        return Some(v.clone());
    }
    let schema = if which == "request" {
        op.raw.pointer("/requestBody/content/application~1json/schema")?
    } else {
        op.raw.get("responses")?.get(which)?.pointer("/content/application~1json/schema")?
    };
    let compiled = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .should_validate_formats(true)
        .build(&convert(schema))
        .unwrap_or_else(|e| panic!("{} {which}: schema does not compile: {e}", op.id));
    let compiled = std::sync::Arc::new(compiled);
    VALIDATORS.lock().unwrap().insert(key, compiled.clone());
    Some(compiled)
}

fn errors(v: &jsonschema::Validator, body: &Value) -> Vec<String> {
    v.iter_errors(body).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

pub fn request_schema_errors(operation_id: &str, body: &Value) -> Vec<String> {
    match validator(operation(operation_id), "request") {
        Some(v) => errors(&v, body),
        None => vec![format!("{operation_id} takes no request body")],
    }
}

pub fn response_schema_errors(operation_id: &str, status: u16, body: &Value) -> Vec<String> {
    match validator(operation(operation_id), &status.to_string()) {
        Some(v) => errors(&v, body),
        None => vec![format!("{operation_id} declares no JSON body for {status}")],
    }
}

fn excerpt(s: &str) -> String {
    s.chars().take(300).collect()
}

/// Every problem of one exchange.
pub fn check(ex: &Exchange<'_>) -> Vec<String> {
    let mut problems = Vec::new();
    if ex.path.starts_with("/oauth/") {
        // Not in these specs; NOTES §1.1 gives the token answer's fields.
        if ex.path == "/oauth/token" && ex.status == 200 {
            let v: Value = serde_json::from_str(ex.response_body).unwrap_or_default();
            let ok = v["access_token"].is_string()
                && v["token_type"].is_string()
                && v["expires_in"].is_u64()
                && v["scope"].is_string();
            if !ok {
                problems.push(format!(
                    "token answer lacks access_token/token_type/expires_in/scope: {}",
                    excerpt(ex.response_body)
                ));
            }
        }
        return problems;
    }
    let Some(op_id) = operation_for(ex.method, ex.path) else {
        return vec![format!("no official operation for {} {}", ex.method, ex.path)];
    };
    let op = operation(op_id);
    if !ex.request_body.trim().is_empty() {
        match serde_json::from_str::<Value>(ex.request_body) {
            Ok(body) => {
                problems.extend(request_schema_errors(op_id, &body).into_iter().map(|e| format!("request: {e}")))
            }
            Err(e) => problems.push(format!("request is not JSON: {e}")),
        }
    } else if op.raw.pointer("/requestBody/required") == Some(&json!(true)) {
        problems.push("request body missing".into());
    }
    let declared = op.raw.get("responses").and_then(|r| r.get(ex.status.to_string()));
    if (200..300).contains(&ex.status) {
        let Some(declared) = declared else {
            problems.push(format!("status {} is not a documented answer of {op_id}", ex.status));
            return problems;
        };
        let has_schema = declared.pointer("/content/application~1json/schema").is_some();
        match (has_schema, ex.response_body.trim().is_empty()) {
            (false, true) => {}
            (false, false) => problems.push(format!("{} must have no body", ex.status)),
            (true, true) => problems.push(format!("{} must have a JSON body", ex.status)),
            (true, false) => match serde_json::from_str::<Value>(ex.response_body) {
                Ok(body) => problems.extend(
                    response_schema_errors(op_id, ex.status, &body).into_iter().map(|e| format!("response: {e}")),
                ),
                Err(e) => problems.push(format!("response is not JSON: {e}")),
            },
        }
    } else {
        // Zoom's error shape (NOTES §6); the specs declare no error schemas.
        let v: Value = serde_json::from_str(ex.response_body).unwrap_or_default();
        let shape = v["code"].is_i64()
            && v["message"].is_string()
            && v.get("errors").is_none_or(|e| {
                e.as_array().is_some_and(|a| a.iter().all(|x| x["field"].is_string() && x["message"].is_string()))
            });
        if !shape {
            problems.push(format!("error answer is not Zoom's {{code, message}}: {}", excerpt(ex.response_body)));
        }
    }
    problems
}

/// Panics listing every problem of every exchange.
pub fn assert_all<'a>(exchanges: impl IntoIterator<Item = Exchange<'a>>) {
    let mut report = Vec::new();
    let mut n = 0;
    for ex in exchanges {
        n += 1;
        for p in check(&ex) {
            report.push(format!(
                "{} {} → {}: {p}\n    request: {}\n    response: {}",
                ex.method,
                ex.path,
                ex.status,
                excerpt(ex.request_body),
                excerpt(ex.response_body)
            ));
        }
    }
    assert!(report.is_empty(), "{} contract problem(s) in {n} exchanges:\n{}", report.len(), report.join("\n"));
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
    for op in OPERATIONS.iter() {
        validator(op, "request");
        for status in op.raw["responses"].as_object().expect("responses").keys() {
            validator(op, status);
        }
    }
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
