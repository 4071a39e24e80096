//! `tsunagu stripe check --account EMAIL`: whether the organizer's stored key works, its mode,
//! what a restricted key lacks, and whether the webhook endpoint Tsunagu created is still there
//! with the pinned API version, our URL and every event of NOTES §3.

use std::fmt::Write;

use tsunagu_core::AccountId;
use tsunagu_store::stripe as store;

use crate::app::SharedApp;

pub struct Report {
    pub lines: Vec<String>,
    pub problems: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn render(&self) -> String {
        let mut out = String::from("Stripe 接続チェック\n");
        for l in &self.lines {
            let _ = writeln!(out, "{l}");
        }
        if self.ok() {
            let _ = writeln!(out, "結果: 問題ありません / all is well");
        } else {
            let _ = writeln!(out, "問題 ({}):", self.problems.len());
            for p in &self.problems {
                let _ = writeln!(out, "  - {p}");
            }
        }
        out
    }
}

pub async fn run(app: &SharedApp, account: AccountId) -> anyhow::Result<Report> {
    let mut r = Report { lines: Vec::new(), problems: Vec::new() };
    let connection = {
        let mut c = app.store.read().await?;
        store::get_connection(&mut c, account).await?
    };
    let (Some(connection), Some(caller)) = (connection, super::caller(app, account).await?) else {
        r.problems.push(
            "Stripe と接続していません。基本設定 > 決済（Stripe）でキーを保存してください / not connected".into(),
        );
        return Ok(r);
    };
    r.lines.push(format!("キー: {} ({})", connection.key_hint, caller.key.mode().label_ja()));
    match app.stripe.check_key(&caller).await {
        Ok(check) => {
            match &check.account {
                Some(a) => {
                    let methods: Vec<&str> = ["card", "konbini"].into_iter().filter(|m| a.can_take(m)).collect();
                    r.lines.push(format!("Stripe アカウント: {}", a.id));
                    r.lines.push(format!("使える支払い方法: {}", methods.join(", ")));
                }
                None => r.lines.push("Stripe アカウント: このキーでは読み取れません".into()),
            }
            for p in &check.missing {
                r.problems.push(format!("制限付きキーに権限がありません: {}", p.label_ja()));
            }
        }
        Err(e) => {
            r.problems.push(format!("[{}] {}", e.code(), e.message_ja()));
            return Ok(r);
        }
    }
    let url = super::webhook_url(&app.config, account);
    match app.stripe.webhook_endpoints(&caller).await {
        Ok(list) => match list.iter().find(|e| e.id == connection.endpoint_id) {
            Some(e) => {
                r.lines.push(format!("Webhook: {} ({}) {}", e.id, e.status, e.url));
                r.lines.push(format!("  API バージョン: {}", e.api_version.as_deref().unwrap_or("(アカウントの既定)")));
                r.lines.push(format!("  イベント: {}", e.enabled_events.join(", ")));
                if e.url != url {
                    r.problems.push(format!("Webhook の URL が {url} ではありません。基本設定 > 決済（Stripe）で保存し直してください"));
                }
                if e.api_version.as_deref() != Some(tsunagu_stripe::API_VERSION) {
                    r.problems.push(format!("Webhook の API バージョンが {} ではありません", tsunagu_stripe::API_VERSION));
                }
                if e.status != "enabled" {
                    r.problems.push("Webhook が無効になっています。Stripe ダッシュボードで有効にしてください".into());
                }
                let lacking: Vec<&str> =
                    tsunagu_stripe::EVENTS.into_iter().filter(|k| !e.enabled_events.iter().any(|x| x == k || x == "*")).collect();
                if !lacking.is_empty() {
                    r.problems.push(format!("Webhook に次のイベントがありません: {}", lacking.join(", ")));
                }
            }
            None => r.problems.push(
                "Tsunagu が作成した Webhook が Stripe にありません（削除された可能性があります）。基本設定 > 決済（Stripe）でキーを保存し直すと作り直します".into(),
            ),
        },
        Err(e) => r.problems.push(format!("Webhook を確認できません: [{}] {}", e.code(), e.message_ja())),
    }
    Ok(r)
}
