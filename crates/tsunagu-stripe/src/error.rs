//! One error type for what Stripe answers (NOTES §1), with a stable code for logs and the
//! database and a Japanese sentence for organizers. [`classify`] reads the HTTP status and
//! Stripe's `{"error": {"type", "code", "message", "param"}}` body; [`StripeError::retryable`]
//! says whether the same request (with the same idempotency key) may be sent again.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StripeError {
    /// 401: the key is wrong, revoked or expired.
    #[error("stripe: invalid API key: {message}")]
    BadKey { message: String },
    /// 403: a restricted key lacks a permission (Stripe's message names it).
    #[error("stripe: permission denied: {message}")]
    Forbidden { message: String },
    /// 429 (`rate_limit`): too many requests; retried with the same key, then surfaced.
    #[error("stripe: rate limited")]
    RateLimited,
    /// 400 `idempotency_error`: the key was used with other parameters. A bug on our side.
    #[error("stripe: idempotency key reused with other parameters: {message}")]
    Idempotency { message: String },
    /// 4xx other than the above: the request was refused as it stands (`param` names the field).
    #[error("stripe: {status} {kind} {code:?} {param:?}: {message}")]
    Invalid { status: u16, kind: String, code: Option<String>, param: Option<String>, message: String },
    /// 5xx.
    #[error("stripe: server error {status}")]
    Server { status: u16 },
    /// No answer in time.
    #[error("stripe: timed out")]
    Timeout,
    /// The connection failed before an answer.
    #[error("stripe: unreachable: {detail}")]
    Unreachable { detail: String },
    /// Where the rate limits are kept (the database) did not answer, so nothing was sent.
    #[error("stripe: limits unavailable: {detail}")]
    LimitsUnavailable { detail: String },
    /// A 2xx answer we could not read.
    #[error("stripe: unreadable answer ({status}): {detail}")]
    Unreadable { status: u16, detail: String },
}

#[derive(Deserialize)]
struct Envelope {
    error: Body,
}

#[derive(Deserialize)]
struct Body {
    #[serde(default, rename = "type")]
    kind: String,
    code: Option<String>,
    #[serde(default)]
    message: String,
    param: Option<String>,
}

/// The error an answer with `status` (not 2xx) and `body` means.
pub fn classify(status: u16, body: &str) -> StripeError {
    let parsed = serde_json::from_str::<Envelope>(body).ok().map(|e| e.error);
    let message = parsed.as_ref().map(|b| b.message.clone()).unwrap_or_default();
    match status {
        401 => StripeError::BadKey { message },
        403 => StripeError::Forbidden { message },
        429 => StripeError::RateLimited,
        500..=599 => StripeError::Server { status },
        _ => match parsed {
            Some(b) if b.kind == "idempotency_error" => StripeError::Idempotency { message },
            Some(b) => StripeError::Invalid { status, kind: b.kind, code: b.code, param: b.param, message },
            None => StripeError::Invalid {
                status,
                kind: String::new(),
                code: None,
                param: None,
                message: body.chars().take(300).collect(),
            },
        },
    }
}

impl StripeError {
    /// Whether sending the same request again (same idempotency key) may succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            StripeError::RateLimited
                | StripeError::Server { .. }
                | StripeError::Timeout
                | StripeError::Unreachable { .. }
                | StripeError::LimitsUnavailable { .. }
        )
    }

    /// A stable code for logs and stored states.
    pub fn code(&self) -> &'static str {
        match self {
            StripeError::BadKey { .. } => "bad_key",
            StripeError::Forbidden { .. } => "forbidden",
            StripeError::RateLimited => "rate_limited",
            StripeError::Idempotency { .. } => "idempotency",
            StripeError::Invalid { .. } => "invalid",
            StripeError::Server { .. } => "server",
            StripeError::Timeout => "timeout",
            StripeError::Unreachable { .. } => "unreachable",
            StripeError::LimitsUnavailable { .. } => "limits_unavailable",
            StripeError::Unreadable { .. } => "unreadable",
        }
    }

    /// What happened and what to do, for the organizer.
    pub fn message_ja(&self) -> String {
        match self {
            StripeError::BadKey { .. } => "Stripeがこのキーを受け付けませんでした。キーが正しいか、削除や再発行（ロール）されていないか、Stripeダッシュボードの［開発者］→［APIキー］で確かめて貼り付け直してください。".into(),
            StripeError::Forbidden { message } => format!(
                "この制限付きキーには必要な権限がありません。Stripeダッシュボードの［開発者］→［APIキー］でキーの権限を追加してください。Stripeからのメッセージ: {message}"
            ),
            StripeError::RateLimited => "Stripeへのリクエストが多すぎるため、しばらく待ってからやり直します。".into(),
            StripeError::Idempotency { .. } => "同じ操作が異なる内容で送られたため、Stripeが受け付けませんでした。運営者に連絡してください。".into(),
            StripeError::Invalid { message, param, .. } => match param {
                Some(p) => format!("Stripeが受け付けませんでした（項目: {p}）。Stripeからのメッセージ: {message}"),
                None => format!("Stripeが受け付けませんでした。Stripeからのメッセージ: {message}"),
            },
            StripeError::Server { .. } => "Stripeで障害が起きています。自動でやり直します。".into(),
            StripeError::Timeout => "Stripeから時間内に応答がありませんでした。自動でやり直します。".into(),
            StripeError::Unreachable { .. } => "Stripeに接続できませんでした。自動でやり直します。".into(),
            StripeError::LimitsUnavailable { .. } => "データベースが応答しないため、Stripeへの送信を控えました。自動でやり直します。".into(),
            StripeError::Unreadable { .. } => "Stripeの応答を読み取れませんでした。運営者に連絡してください。".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripe_answers_are_classified() {
        let body =
            |t: &str, c: &str| format!(r#"{{"error":{{"type":"{t}","code":"{c}","message":"m","param":"amount"}}}}"#);
        assert!(matches!(classify(401, &body("invalid_request_error", "")), StripeError::BadKey { .. }));
        assert!(matches!(classify(403, &body("invalid_request_error", "")), StripeError::Forbidden { .. }));
        assert_eq!(classify(429, &body("invalid_request_error", "rate_limit")), StripeError::RateLimited);
        assert!(matches!(classify(400, &body("idempotency_error", "")), StripeError::Idempotency { .. }));
        match classify(400, &body("invalid_request_error", "amount_too_small")) {
            StripeError::Invalid { param, code, .. } => {
                assert_eq!((param.as_deref(), code.as_deref()), (Some("amount"), Some("amount_too_small")))
            }
            e => panic!("{e:?}"),
        }
        assert!(classify(502, "<html>").retryable());
        assert!(!classify(404, "not json").retryable());
        assert!(classify(404, "not json").message_ja().contains("not json"));
    }
}
