//! The LINE connection check (`tsunagu line check`): can a channel access token be obtained,
//! the bot's profile, the webhook endpoint registered at LINE (is it this installation's, is it
//! on, does LINE's test reach it), and the month's quota and consumption. All is well only when
//! every one of these is.

use std::fmt::Write as _;

use tsunagu_line::client::{BotInfo, Quota, WebhookEndpointInfo, WebhookTestResult};
use tsunagu_line::{Channel, LineClient, LineError};

#[derive(Debug)]
pub struct Report {
    pub channel_id: String,
    pub expected_webhook: String,
    pub token: Result<(), LineError>,
    pub bot: Option<Result<BotInfo, LineError>>,
    pub webhook: Option<Result<WebhookEndpointInfo, LineError>>,
    pub test: Option<Result<WebhookTestResult, LineError>>,
    pub quota: Option<Result<(Quota, i64), LineError>>,
}

impl Report {
    fn webhook_ok(&self) -> bool {
        matches!(&self.webhook, Some(Ok(w)) if w.active && w.endpoint == self.expected_webhook)
    }

    fn quota_ok(&self) -> bool {
        match &self.quota {
            Some(Ok((q, used))) => q.kind == "none" || q.value.is_some_and(|v| *used < v),
            _ => false,
        }
    }

    pub fn ok(&self) -> bool {
        self.token.is_ok()
            && matches!(self.bot, Some(Ok(_)))
            && self.webhook_ok()
            && matches!(&self.test, Some(Ok(t)) if t.success)
            && self.quota_ok()
    }

    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "LINE 接続チェック（チャネルID {}）", self.channel_id);
        match &self.token {
            Ok(()) => {
                let _ = writeln!(o, "チャネルアクセストークン: 取得できました");
            }
            Err(e) => {
                let _ = writeln!(o, "チャネルアクセストークン: 取得できません [{}] {}", e.code(), e.message_ja());
            }
        }
        match &self.bot {
            Some(Ok(b)) => {
                let _ = writeln!(o, "公式アカウント: {} ({}) ユーザーID {}", b.display_name, b.basic_id, b.user_id);
            }
            Some(Err(e)) => {
                let _ = writeln!(o, "公式アカウント: 取得できません [{}] {}", e.code(), e.message_ja());
            }
            None => {}
        }
        match &self.webhook {
            Some(Ok(w)) => {
                let _ = writeln!(
                    o,
                    "Webhook URL（LINE に登録済み）: {}（{}）",
                    w.endpoint,
                    if w.active { "利用する: オン" } else { "利用する: オフ" }
                );
                if w.endpoint != self.expected_webhook {
                    let _ = writeln!(
                        o,
                        "  → この Tsunagu の Webhook URL は {} です。LINE Developers で設定し直してください。",
                        self.expected_webhook
                    );
                }
                if !w.active {
                    let _ = writeln!(
                        o,
                        "  → LINE Developers の Messaging API 設定で［Webhook の利用］をオンにしてください。"
                    );
                }
            }
            Some(Err(LineError::NotFound { .. })) => {
                let _ = writeln!(
                    o,
                    "Webhook URL: 未設定です。LINE Developers で {} を設定してください。",
                    self.expected_webhook
                );
            }
            Some(Err(e)) => {
                let _ = writeln!(o, "Webhook URL: 取得できません [{}] {}", e.code(), e.message_ja());
            }
            None => {}
        }
        match &self.test {
            Some(Ok(t)) if t.success => {
                let _ = writeln!(o, "Webhook の疎通テスト: 成功（HTTP {}）", t.status_code);
            }
            Some(Ok(t)) => {
                let _ = writeln!(o, "Webhook の疎通テスト: 失敗（{} HTTP {} {}）", t.reason, t.status_code, t.detail);
            }
            Some(Err(e)) => {
                let _ = writeln!(o, "Webhook の疎通テスト: 実行できません [{}] {}", e.code(), e.message_ja());
            }
            None => {}
        }
        match &self.quota {
            Some(Ok((q, used))) => match q.value {
                Some(v) if q.kind == "limited" => {
                    let _ = writeln!(o, "今月のメッセージ: {used} 通 / 上限 {v} 通");
                    if *used >= v {
                        let _ = writeln!(
                            o,
                            "  → 上限に達しています。LINE Official Account Manager でプランを見直してください。"
                        );
                    }
                }
                _ => {
                    let _ = writeln!(o, "今月のメッセージ: {used} 通（上限なし）");
                }
            },
            Some(Err(e)) => {
                let _ = writeln!(o, "今月のメッセージ: 取得できません [{}] {}", e.code(), e.message_ja());
            }
            None => {}
        }
        let _ = writeln!(o, "結果: {}", if self.ok() { "OK" } else { "NG（上の項目を確認してください）" });
        o
    }
}

/// Run the check; `expected_webhook` is this installation's URL for the channel.
pub async fn run(client: &LineClient, ch: &Channel, expected_webhook: &str) -> Report {
    let mut r = Report {
        channel_id: ch.id.clone(),
        expected_webhook: expected_webhook.to_string(),
        token: client.token(ch).await.map(|_| ()),
        bot: None,
        webhook: None,
        test: None,
        quota: None,
    };
    if r.token.is_err() {
        return r;
    }
    r.bot = Some(client.bot_info(ch).await);
    r.webhook = Some(client.webhook_endpoint(ch).await);
    if matches!(r.webhook, Some(Ok(_))) {
        r.test = Some(client.test_webhook_endpoint(ch, None).await);
    }
    r.quota = Some(match (client.quota(ch).await, client.consumption(ch).await) {
        (Ok(q), Ok(used)) => Ok((q, used)),
        (Err(e), _) | (_, Err(e)) => Err(e),
    });
    r
}
