//! One error type for what LINE answers (NOTES §2.3, §1), with a stable code and a Japanese
//! message for instructors. LINE's texts are not guaranteed, so the status decides, except for
//! the two kinds of 429: the rate limit (pause, retry) and the monthly limit (stop sending on
//! that channel until the instructor acts), which only the message tells apart.

use serde::Deserialize;

use crate::message::MessageError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// Channel ID or secret wrong (token endpoint).
    BadChannelCredentials,
    /// The channel access token was refused (401): renew once, then retry.
    InvalidToken,
    /// 400 with LINE's details (invalid message, user id from another provider, …).
    BadRequest {
        message: String,
        details: Vec<String>,
    },
    /// 403: not allowed for this channel or plan.
    Forbidden {
        message: String,
    },
    /// 404: profile unavailable, webhook endpoint unset, …
    NotFound {
        message: String,
    },
    /// 413: the request is over 2 MB.
    TooLarge,
    /// 429 rate limit: pause, then retry.
    RateLimited,
    /// 429 monthly limit: stop sending on this channel until the instructor acts.
    MonthlyLimit,
    /// 5xx.
    Server {
        status: u16,
    },
    /// No answer in time.
    Timeout,
    /// The message breaks one of LINE's rules (checked before sending).
    Message(MessageError),
    /// The retry key is older than LINE's 24 hours: retrying could send twice.
    RetryKeyExpired,
    /// Where the rate limits are kept (the database) did not answer, so nothing was sent.
    LimitsUnavailable {
        detail: String,
    },
    Other {
        status: u16,
        message: String,
    },
}

#[derive(Debug, Deserialize, Default)]
struct Body {
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Vec<Detail>,
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

#[derive(Debug, Deserialize, Default)]
struct Detail {
    #[serde(default)]
    message: String,
    #[serde(default)]
    property: String,
}

/// Classify a non-success answer from the Messaging API or a token endpoint.
pub fn classify(status: u16, body: &str) -> LineError {
    let b: Body = serde_json::from_str(body).unwrap_or_default();
    let message = if b.message.is_empty() { b.error_description.clone() } else { b.message.clone() };
    let lower = message.to_ascii_lowercase();
    match status {
        400 | 401 if b.error == "invalid_client" || lower.contains("invalid client") => {
            LineError::BadChannelCredentials
        }
        401 => LineError::InvalidToken,
        400 => {
            LineError::BadRequest {
                message,
                details: b
                    .details
                    .iter()
                    .map(|d| {
                        if d.property.is_empty() { d.message.clone() } else { format!("{}: {}", d.property, d.message) }
                    })
                    .collect(),
            }
        }
        403 => LineError::Forbidden { message },
        404 => LineError::NotFound { message },
        413 => LineError::TooLarge,
        429 if lower.contains("monthly limit") => LineError::MonthlyLimit,
        429 => LineError::RateLimited,
        s if s >= 500 => LineError::Server { status: s },
        s => LineError::Other { status: s, message },
    }
}

impl LineError {
    pub fn code(&self) -> &'static str {
        match self {
            LineError::BadChannelCredentials => "line.bad_channel_credentials",
            LineError::InvalidToken => "line.invalid_token",
            LineError::BadRequest { .. } => "line.bad_request",
            LineError::Forbidden { .. } => "line.forbidden",
            LineError::NotFound { .. } => "line.not_found",
            LineError::TooLarge => "line.too_large",
            LineError::RateLimited => "line.rate_limited",
            LineError::MonthlyLimit => "line.monthly_limit",
            LineError::Server { .. } => "line.server_error",
            LineError::Timeout => "line.timeout",
            LineError::Message(m) => m.code,
            LineError::RetryKeyExpired => "line.retry_key_expired",
            LineError::LimitsUnavailable { .. } => "line.limits_unavailable",
            LineError::Other { .. } => "line.other",
        }
    }

    pub fn message_ja(&self) -> String {
        match self {
            LineError::BadChannelCredentials => "LINE に接続できません。公式LINE連携のチャネルID・チャネルシークレットが、LINE Developers の Messaging API チャネルの値と一致しているか確認してください。".into(),
            LineError::InvalidToken => "LINE の認証の有効期限が切れました。自動で再接続します。".into(),
            LineError::BadRequest { details, .. } if !details.is_empty() => format!("LINE がメッセージを受け付けませんでした（{}）。内容を確認してください。", details.join("、")),
            LineError::BadRequest { message, .. } => format!("LINE がメッセージを受け付けませんでした（{message}）。内容を確認してください。"),
            LineError::Forbidden { .. } => "この公式アカウントでは、この操作が許可されていません。LINE 公式アカウントのプランや設定を確認してください。".into(),
            LineError::NotFound { .. } => "LINE で相手が見つかりません（友だちでない、ブロックされている、または設定されていません）。".into(),
            LineError::TooLarge => "送信内容が大きすぎます（LINE の上限は 2MB）。".into(),
            LineError::RateLimited => "LINE への送信が集中しています。少し待って自動で再送します。".into(),
            LineError::MonthlyLimit => "LINE 公式アカウントの今月のメッセージ通数の上限に達したため、配信を止めています。LINE Official Account Manager でプランまたは追加メッセージの上限を見直してから、配信を再開してください。".into(),
            LineError::Server { .. } | LineError::Timeout => "LINE が一時的に応答していません。時間をおいて自動で再送します。".into(),
            LineError::Message(m) => m.message_ja.clone(),
            LineError::RetryKeyExpired => "送信から24時間以上たったため、二重送信を避けて自動再送を止めました。配信状況を確認してください。".into(),
            LineError::LimitsUnavailable { .. } => "LINE の送信上限を確認できなかったため、送信を見合わせました。時間をおいて自動で再送します。解決しない場合は管理者にお問い合わせください。".into(),
            LineError::Other { message, .. } => format!("LINE でエラーが発生しました（{message}）。解決しない場合は管理者にお問い合わせください。"),
        }
    }

    /// Whether the same request (same retry key, body and recipients) may be sent again.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            LineError::Server { .. }
                | LineError::Timeout
                | LineError::RateLimited
                | LineError::LimitsUnavailable { .. }
        )
    }
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineError::BadRequest { message, details } => write!(f, "{}: {message} {details:?}", self.code()),
            LineError::Other { status, message } => write!(f, "{} (HTTP {status}): {message}", self.code()),
            LineError::LimitsUnavailable { detail } => write!(f, "{}: {detail}", self.code()),
            _ => f.write_str(self.code()),
        }
    }
}

impl std::error::Error for LineError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_kinds() {
        assert_eq!(classify(429, r#"{"message":"You have reached your monthly limit."}"#), LineError::MonthlyLimit);
        assert_eq!(
            classify(429, r#"{"message":"The API rate limit has been exceeded. Try again later."}"#),
            LineError::RateLimited
        );
        assert_eq!(
            classify(400, r#"{"error":"invalid_client","error_description":"invalid client_secret"}"#),
            LineError::BadChannelCredentials
        );
        assert_eq!(
            classify(
                401,
                r#"{"message":"Authentication failed. Confirm that the access token in the authorization header is valid."}"#
            ),
            LineError::InvalidToken
        );
        let LineError::BadRequest { details, .. } = classify(
            400,
            r#"{"message":"The request body has 1 error(s)","details":[{"message":"Length must be between 0 and 5000","property":"messages[0].text"}]}"#,
        ) else {
            panic!()
        };
        assert_eq!(details, vec!["messages[0].text: Length must be between 0 and 5000"]);
        assert_eq!(classify(503, "<html>"), LineError::Server { status: 503 });
        assert!(LineError::Timeout.retryable() && LineError::RateLimited.retryable());
        assert!(!LineError::MonthlyLimit.retryable() && !LineError::InvalidToken.retryable());
        assert!(LineError::MonthlyLimit.message_ja().contains("上限"));
    }
}
