//! One error type for everything Zoom answers, with a stable code for logs and the database and
//! a Japanese sentence for organizers (NOTES §1.2, §5.1, §6, §7). `classify` reads the HTTP
//! status, Zoom's `{"code","message"}` body and the rate-limit headers; [`ZoomError::retry`]
//! says what a caller may do next, so that no retry decision is made by guesswork.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoomError {
    /// Account ID / Client ID / Client Secret wrong, or not an S2S app (4702, 4704, 4705, 4706).
    BadCredentials,
    /// The Marketplace app is deactivated (4717).
    AppDisabled,
    /// The organizer's OAuth authorization is gone (refresh token used, expired or revoked).
    ReconnectNeeded,
    /// The token lacks a scope (4700).
    MissingScope { detail: String },
    /// Expired or invalidated token (124): renew once, then retry.
    TokenExpired,
    /// The host or an alternative host cannot be a registrant (3027).
    HostCannotRegister,
    /// The meeting or webinar no longer exists on Zoom (3001), e.g. deleted there.
    EventGone,
    /// The host user does not exist (1001).
    UserNotFound,
    /// Registration is off for the meeting/webinar.
    RegistrationNotEnabled,
    /// This email was cancelled or denied for the event; Zoom refuses it again (observed).
    RegistrantDenied,
    /// Required questions set in Zoom block registration through the API.
    QuestionsBlockRegistration,
    /// The account has no webinar licence (200).
    WebinarPlanMissing,
    /// Capacity reached (3035, 3043).
    Full,
    /// The webinar is over (3038).
    EventOver,
    /// Per-second limit: wait for the reset, then retry.
    PerSecondLimit { retry_after_ms: u64 },
    /// Daily limit for the account or the host: no retry before `retry_after` (Zoom's date).
    DailyLimit { retry_after: Option<String> },
    /// The 3 adds per registrant email per day (resets 00:00 UTC).
    RegistrantDailyLimit,
    /// Zoom failed (5xx).
    Server { status: u16 },
    /// No answer in time.
    Timeout,
    /// Where the rate limits and daily counts are kept (the database) did not answer, so
    /// nothing was sent: retry later.
    LimitsUnavailable { detail: String },
    /// Anything else, kept whole for the operator.
    Other { status: u16, code: Option<i64>, message: String },
}

/// What the caller may do after an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retry {
    /// Do not retry; the organizer (or operator) has to act.
    No,
    /// Renew the access token once, then retry.
    RenewToken,
    /// Retry after this many milliseconds.
    After { ms: u64 },
    /// Retry with backoff, but only if the call is safe to repeat (GET, PATCH, DELETE, or an
    /// add that is first checked against the registrant list).
    BackoffIfSafe,
    /// Not before this time (Zoom's `Retry-After`), or the next 00:00 UTC when unknown.
    NotBefore { retry_after: Option<String> },
}

#[derive(Debug, Deserialize, Default)]
struct Body {
    code: Option<i64>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    errors: Vec<FieldError>,
}

#[derive(Debug, Deserialize, Default)]
struct FieldError {
    #[serde(default)]
    field: String,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Classify a non-success answer from the REST API or the token endpoint.
pub fn classify(status: u16, headers: &[(String, String)], body: &str) -> ZoomError {
    let b: Body = serde_json::from_str(body).unwrap_or_default();
    let msg = if b.message.is_empty() { b.reason.clone() } else { b.message.clone() };
    let lower = msg.to_ascii_lowercase();
    if status == 429 {
        let kind = header(headers, "x-ratelimit-type").unwrap_or("");
        if lower.contains("for the registrant") {
            return ZoomError::RegistrantDailyLimit;
        }
        if kind.eq_ignore_ascii_case("daily-limit") || lower.contains("daily") {
            return ZoomError::DailyLimit { retry_after: header(headers, "retry-after").map(str::to_string) };
        }
        // Per-second: X-RateLimit-Reset when present (seconds), else a short pause.
        let reset_ms =
            header(headers, "x-ratelimit-reset").and_then(|v| v.trim().parse::<u64>().ok()).map(|s| s * 1000);
        return ZoomError::PerSecondLimit { retry_after_ms: reset_ms.unwrap_or(1000).clamp(100, 60_000) };
    }
    if status >= 500 {
        return ZoomError::Server { status };
    }
    match b.code {
        Some(4702 | 4704 | 4705 | 4706) => return ZoomError::BadCredentials,
        Some(4717) => return ZoomError::AppDisabled,
        Some(4700) => return ZoomError::MissingScope { detail: msg },
        Some(124) => return ZoomError::TokenExpired,
        Some(3027) => return ZoomError::HostCannotRegister,
        Some(3001) => return ZoomError::EventGone,
        Some(200) => return ZoomError::WebinarPlanMissing,
        Some(3035 | 3043) => return ZoomError::Full,
        Some(3038) => return ZoomError::EventOver,
        _ => {}
    }
    if lower.contains("does not contain scopes") {
        return ZoomError::MissingScope { detail: msg };
    }
    if lower.contains("registration has not been enabled") || lower.contains("does not have registration") {
        return ZoomError::RegistrationNotEnabled;
    }
    if b.errors.iter().any(|e| e.field.contains("custom_questions")) {
        return ZoomError::QuestionsBlockRegistration;
    }
    if lower.contains("has been denied") {
        return ZoomError::RegistrantDenied;
    }
    if b.code == Some(1001) {
        return if lower.contains("meeting") { ZoomError::EventGone } else { ZoomError::UserNotFound };
    }
    // The token endpoint answers OAuth-style errors without Zoom codes.
    if lower.contains("invalid client") || b.reason.contains("invalid_client") || (status == 401 && b.code.is_none()) {
        return ZoomError::BadCredentials;
    }
    ZoomError::Other { status, code: b.code, message: msg }
}

impl ZoomError {
    /// Stable identifier (logs, stored job errors, tests). Never changes once released.
    pub fn code(&self) -> &'static str {
        match self {
            ZoomError::BadCredentials => "zoom.bad_credentials",
            ZoomError::AppDisabled => "zoom.app_disabled",
            ZoomError::ReconnectNeeded => "zoom.reconnect_needed",
            ZoomError::MissingScope { .. } => "zoom.missing_scope",
            ZoomError::TokenExpired => "zoom.token_expired",
            ZoomError::HostCannotRegister => "zoom.host_cannot_register",
            ZoomError::EventGone => "zoom.event_gone",
            ZoomError::UserNotFound => "zoom.user_not_found",
            ZoomError::RegistrationNotEnabled => "zoom.registration_not_enabled",
            ZoomError::RegistrantDenied => "zoom.registrant_denied",
            ZoomError::QuestionsBlockRegistration => "zoom.questions_block_registration",
            ZoomError::WebinarPlanMissing => "zoom.webinar_plan_missing",
            ZoomError::Full => "zoom.full",
            ZoomError::EventOver => "zoom.event_over",
            ZoomError::PerSecondLimit { .. } => "zoom.rate_limited",
            ZoomError::DailyLimit { .. } => "zoom.daily_limit",
            ZoomError::RegistrantDailyLimit => "zoom.registrant_daily_limit",
            ZoomError::Server { .. } => "zoom.server_error",
            ZoomError::Timeout => "zoom.timeout",
            ZoomError::LimitsUnavailable { .. } => "zoom.limits_unavailable",
            ZoomError::Other { .. } => "zoom.other",
        }
    }

    /// What the organizer reads: what happened and what to do.
    pub fn message_ja(&self) -> String {
        match self {
            ZoomError::BadCredentials => "Zoom に接続できません。基本設定の Account ID・Client ID・Client Secret が、Zoom Marketplace で作成した Server-to-Server OAuth アプリの値と一致しているか確認してください。".into(),
            ZoomError::AppDisabled => "Zoom Marketplace のアプリが無効になっています。Zoom Marketplace でアプリを有効（Activate）にしてください。".into(),
            ZoomError::ReconnectNeeded => "Zoom との連携が解除されたか期限が切れました。基本設定の［Zoom と連携する］からもう一度連携してください。".into(),
            ZoomError::RegistrantDenied => "このメールアドレスはこの Zoom イベントで一度キャンセル（拒否）されているため、Zoom が再登録を受け付けません。Zoom の管理画面で拒否を取り消すか、別のメールアドレスでお申し込みください。".into(),
            ZoomError::MissingScope { .. } => "Zoom アプリに必要なスコープが不足しています。基本設定の接続テストで不足しているスコープを確認し、Zoom Marketplace で追加してください。".into(),
            ZoomError::TokenExpired => "Zoom の認証の有効期限が切れました。自動で再接続します。".into(),
            ZoomError::HostCannotRegister => "Zoom のオーナー（ホスト）や代替ホストのメールアドレスは参加者として登録できません。別のメールアドレスでお申し込みください。".into(),
            ZoomError::EventGone => "Zoom 上でこのミーティング／ウェビナーが見つかりません（Zoom で削除された可能性があります）。Zoom設定を開いて［保存する］を押すと作り直せます。".into(),
            ZoomError::UserNotFound => "Zoom のホストユーザーが見つかりません。Zoom アカウントのオーナーユーザーで連携しているか確認してください。".into(),
            ZoomError::RegistrationNotEnabled => "Zoom 側で参加者登録が有効になっていません。Zoom設定で［参加者登録利用］をオンにして［保存する］を押してください。".into(),
            ZoomError::QuestionsBlockRegistration => "Zoom で「質問」や「カスタムの質問」が設定されているため登録できません。Zoom の管理画面でそれらの設定を外してください。".into(),
            ZoomError::WebinarPlanMissing => "この Zoom アカウントにはウェビナーのライセンスがありません。ウェビナーライセンスを付与したオーナーユーザーで連携するか、ミーティングを選んでください。".into(),
            ZoomError::Full => "Zoom の定員に達したため、これ以上登録できません。".into(),
            ZoomError::EventOver => "ウェビナーが終了しているため登録できません。".into(),
            ZoomError::PerSecondLimit { .. } => "Zoom へのリクエストが集中しています。少し待って自動で再試行します。".into(),
            ZoomError::DailyLimit { .. } => "Zoom の1日あたりの利用上限に達しました。上限がリセットされた後（日本時間 午前9時以降）に自動で再試行します。".into(),
            ZoomError::RegistrantDailyLimit => "同じメールアドレスの Zoom 登録は1日3回までです。日本時間の午前9時以降に自動で再試行します。".into(),
            ZoomError::Server { .. } | ZoomError::Timeout => "Zoom が一時的に応答していません。時間をおいて自動で再試行します。".into(),
            ZoomError::LimitsUnavailable { .. } => "Zoom の利用上限を確認できなかったため、送信を見合わせました。時間をおいて自動で再試行します。解決しない場合は管理者にお問い合わせください。".into(),
            ZoomError::Other { message, .. } => format!("Zoom でエラーが発生しました（{message}）。解決しない場合は管理者にお問い合わせください。"),
        }
    }

    pub fn retry(&self) -> Retry {
        match self {
            ZoomError::TokenExpired => Retry::RenewToken,
            ZoomError::PerSecondLimit { retry_after_ms } => Retry::After { ms: *retry_after_ms },
            ZoomError::DailyLimit { retry_after } => Retry::NotBefore { retry_after: retry_after.clone() },
            ZoomError::RegistrantDailyLimit => Retry::NotBefore { retry_after: None },
            ZoomError::Server { .. } | ZoomError::Timeout => Retry::BackoffIfSafe,
            // Nothing was sent, so even a create may be tried again.
            ZoomError::LimitsUnavailable { .. } => Retry::After { ms: 1000 },
            _ => Retry::No,
        }
    }
}

impl std::fmt::Display for ZoomError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ZoomError::Other { status, code, message } => {
                write!(f, "{} (HTTP {status}, code {code:?}): {message}", self.code())
            }
            ZoomError::MissingScope { detail } | ZoomError::LimitsUnavailable { detail } => {
                write!(f, "{}: {detail}", self.code())
            }
            _ => f.write_str(self.code()),
        }
    }
}

impl std::error::Error for ZoomError {}

impl From<tsunagu_core::rate::BudgetError> for ZoomError {
    fn from(e: tsunagu_core::rate::BudgetError) -> Self {
        ZoomError::LimitsUnavailable { detail: e.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn zoom_codes_map_to_kinds() {
        let c = |status, body: &str| classify(status, &[], body);
        assert_eq!(c(400, r#"{"code":3027,"message":"Host cannot register"}"#), ZoomError::HostCannotRegister);
        assert_eq!(c(404, r#"{"code":3001,"message":"Meeting does not exist: 123."}"#), ZoomError::EventGone);
        assert_eq!(c(401, r#"{"code":124,"message":"Invalid access token."}"#), ZoomError::TokenExpired);
        assert!(matches!(
            c(
                401,
                r#"{"code":4700,"message":"Invalid access token, does not contain scopes:[meeting:write:meeting:admin]."}"#
            ),
            ZoomError::MissingScope { .. }
        ));
        assert_eq!(
            c(400, r#"{"reason":"Invalid client_id or client_secret","error":"invalid_client"}"#),
            ZoomError::BadCredentials
        );
        assert_eq!(c(400, r#"{"code":4705,"message":"Grant type is not supported."}"#), ZoomError::BadCredentials);
        assert_eq!(
            c(404, r#"{"code":3000,"message":"Registration has not been enabled for this meeting: 123."}"#),
            ZoomError::RegistrationNotEnabled
        );
        assert_eq!(
            c(400, r#"{"code":3000,"message":"This webinar does not have registration as required"}"#),
            ZoomError::RegistrationNotEnabled
        );
        assert_eq!(
            c(
                400,
                r#"{"code":300,"message":"Validation Failed.","errors":[{"field":"custom_questions","message":"required"}]}"#
            ),
            ZoomError::QuestionsBlockRegistration
        );
        assert_eq!(c(404, r#"{"code":1001,"message":"User does not exist: x@example.com."}"#), ZoomError::UserNotFound);
        assert_eq!(c(400, r#"{"code":200,"message":"Webinar plan is missing."}"#), ZoomError::WebinarPlanMissing);
        assert_eq!(c(502, "<html>bad gateway</html>"), ZoomError::Server { status: 502 });
        assert!(matches!(
            c(400, r#"{"code":9999,"message":"Something new"}"#),
            ZoomError::Other { code: Some(9999), .. }
        ));
    }

    #[test]
    fn the_four_kinds_of_429_are_told_apart() {
        let per_second = classify(
            429,
            &h(&[("X-RateLimit-Type", "QPS"), ("X-RateLimit-Reset", "2")]),
            r#"{"code":429,"message":"You have reached the maximum per-second rate limit for this API. Try again later."}"#,
        );
        assert_eq!(per_second, ZoomError::PerSecondLimit { retry_after_ms: 2000 });
        assert_eq!(per_second.retry(), Retry::After { ms: 2000 });
        let daily = classify(
            429,
            &h(&[("X-RateLimit-Type", "Daily-limit"), ("Retry-After", "2026-11-24T00:00:00Z")]),
            r#"{"code":429,"message":"You have reached the maximum daily rate limit for this API."}"#,
        );
        assert_eq!(daily.retry(), Retry::NotBefore { retry_after: Some("2026-11-24T00:00:00Z".into()) });
        let host = classify(
            429,
            &[],
            r#"{"code":429,"message":"You have exceeded the daily rate limit (100) of Meeting Create/Update API requests permitted for this particular user."}"#,
        );
        assert!(matches!(host, ZoomError::DailyLimit { retry_after: None }));
        let registrant = classify(
            429,
            &[],
            r#"{"code":429,"message":"You have exceeded the daily rate limit of (3) for Add meeting registrant API requests for the registrant (a@example.com). You can resume these API requests at GMT 00:00:00."}"#,
        );
        assert_eq!(registrant, ZoomError::RegistrantDailyLimit);
        assert_eq!(registrant.retry(), Retry::NotBefore { retry_after: None });
    }

    #[test]
    fn every_kind_has_a_stable_code_and_japanese_words() {
        let all = [
            ZoomError::BadCredentials,
            ZoomError::AppDisabled,
            ZoomError::ReconnectNeeded,
            ZoomError::RegistrantDenied,
            ZoomError::MissingScope { detail: String::new() },
            ZoomError::TokenExpired,
            ZoomError::HostCannotRegister,
            ZoomError::EventGone,
            ZoomError::UserNotFound,
            ZoomError::RegistrationNotEnabled,
            ZoomError::QuestionsBlockRegistration,
            ZoomError::WebinarPlanMissing,
            ZoomError::Full,
            ZoomError::EventOver,
            ZoomError::PerSecondLimit { retry_after_ms: 1 },
            ZoomError::DailyLimit { retry_after: None },
            ZoomError::RegistrantDailyLimit,
            ZoomError::Server { status: 500 },
            ZoomError::Timeout,
            ZoomError::LimitsUnavailable { detail: String::new() },
            ZoomError::Other { status: 400, code: None, message: "x".into() },
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(|e| e.code()).collect();
        assert_eq!(codes.len(), all.len(), "codes are unique");
        for e in &all {
            assert!(e.code().starts_with("zoom."));
            assert!(e.message_ja().chars().any(|c| ('\u{3040}'..='\u{30ff}').contains(&c)), "{e:?} has Japanese text");
        }
        assert_eq!(ZoomError::TokenExpired.retry(), Retry::RenewToken);
        assert_eq!(ZoomError::Timeout.retry(), Retry::BackoffIfSafe);
        assert_eq!(ZoomError::HostCannotRegister.retry(), Retry::No);
    }
}
