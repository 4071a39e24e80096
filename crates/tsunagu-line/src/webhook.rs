//! Webhook bodies (NOTES §4): `{destination, events: [...]}`. Events are read loosely: the
//! fields Tsunagu uses are typed, everything else is kept as it came (`raw`), and types this
//! code does not know are kept and ignored, never errors (LINE adds new ones).

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Deserialize)]
pub struct CallbackRequest {
    pub destination: String,
    #[serde(default)]
    pub events: Vec<Value>,
}

/// The parts of an event Tsunagu uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventInfo {
    pub kind: String,
    pub webhook_event_id: String,
    pub timestamp_ms: i64,
    pub user_id: Option<String>,
    pub reply_token: Option<String>,
    pub is_redelivery: bool,
    pub standby: bool,
    /// For `follow`: `true` when the user unblocked the account (accuracy not guaranteed).
    pub is_unblocked: Option<bool>,
}

impl EventInfo {
    pub fn from_json(v: &Value) -> Option<EventInfo> {
        Some(EventInfo {
            kind: v.get("type")?.as_str()?.to_string(),
            webhook_event_id: v.get("webhookEventId")?.as_str()?.to_string(),
            timestamp_ms: v.get("timestamp").and_then(Value::as_i64).unwrap_or(0),
            user_id: v.pointer("/source/userId").and_then(Value::as_str).map(str::to_string),
            reply_token: v.get("replyToken").and_then(Value::as_str).map(str::to_string),
            is_redelivery: v.pointer("/deliveryContext/isRedelivery").and_then(Value::as_bool).unwrap_or(false),
            standby: v.get("mode").and_then(Value::as_str) == Some("standby"),
            is_unblocked: v.pointer("/follow/isUnblocked").and_then(Value::as_bool),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_unfollow_and_unknown_events() {
        let body = r#"{"destination":"Uaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","events":[
          {"type":"follow","mode":"active","timestamp":1700000000000,"source":{"type":"user","userId":"U0123456789abcdef0123456789abcdef"},
           "webhookEventId":"01HABCDEF","deliveryContext":{"isRedelivery":false},"replyToken":"rt1","follow":{"isUnblocked":true}},
          {"type":"unfollow","mode":"active","timestamp":1700000000001,"source":{"type":"user","userId":"U0123456789abcdef0123456789abcdef"},
           "webhookEventId":"01HABCDEG","deliveryContext":{"isRedelivery":true}},
          {"type":"somethingNew","webhookEventId":"01HABCDEH","timestamp":1,"mode":"standby"}]}"#;
        let r: CallbackRequest = serde_json::from_str(body).unwrap();
        let e: Vec<EventInfo> = r.events.iter().filter_map(EventInfo::from_json).collect();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].is_unblocked, Some(true));
        assert_eq!(e[0].reply_token.as_deref(), Some("rt1"));
        assert!(e[1].is_redelivery && e[1].reply_token.is_none());
        assert_eq!(e[2].kind, "somethingNew");
        assert!(e[2].standby);
        let empty: CallbackRequest = serde_json::from_str(r#"{"destination":"U1","events":[]}"#).unwrap();
        assert!(empty.events.is_empty());
    }
}
