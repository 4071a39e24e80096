//! The Zoom connection check: can a token be obtained, which of the scopes the manual needs
//! are missing (each with where to add it), who the host user is, and which rate figures are in
//! use. `tsunagu zoom check` prints it and exits 0 only when everything is there.

use std::fmt::Write as _;

use tsunagu_zoom::limits::{Label, ZoomPlan};
use tsunagu_zoom::model::User;
use tsunagu_zoom::scopes::{self, MissingScope};
use tsunagu_zoom::{Auth, Organizer, ZoomClient, ZoomError};

#[derive(Debug)]
pub struct Report {
    pub method: String,
    pub token: Result<Vec<String>, ZoomError>,
    pub missing: Vec<MissingScope>,
    pub host: Option<Result<User, ZoomError>>,
    pub host_asked: String,
    pub plan: ZoomPlan,
}

impl Report {
    /// Everything the manual needs is there.
    pub fn ok(&self) -> bool {
        self.token.is_ok() && self.missing.is_empty() && matches!(self.host, Some(Ok(_)))
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Zoom 接続チェック");
        let _ = writeln!(out, "認証方式: {}", self.method);
        match &self.token {
            Ok(granted) => {
                let _ = writeln!(out, "アクセストークン: 取得できました");
                let _ = writeln!(out, "付与されているスコープ ({}):", granted.len());
                let mut sorted = granted.clone();
                sorted.sort();
                for s in sorted {
                    let _ = writeln!(out, "  - {s}");
                }
                if self.missing.is_empty() {
                    let _ = writeln!(out, "不足しているスコープ: なし");
                } else {
                    let _ = writeln!(out, "不足しているスコープ ({}):", self.missing.len());
                    for m in &self.missing {
                        let _ = writeln!(out, "  - {}: {}", m.scope.name, m.message);
                    }
                }
            }
            Err(e) => {
                let _ = writeln!(out, "アクセストークン: 取得できません [{}] {}", e.code(), e.message_ja());
                let _ = writeln!(out, "  詳細: {e}");
            }
        }
        match &self.host {
            Some(Ok(u)) => {
                let licensed = if u.kind >= 2 { "有料ライセンス" } else { "基本（無料）ユーザー" };
                let _ = writeln!(out, "ホストユーザー: {} (ID {}, {licensed})", u.email, u.id);
            }
            Some(Err(e)) => {
                let _ = writeln!(
                    out,
                    "ホストユーザー: {} を取得できません [{}] {}",
                    self.host_asked,
                    e.code(),
                    e.message_ja()
                );
            }
            None => {
                let _ = writeln!(out, "ホストユーザー: トークンが無いため確認できません");
            }
        }
        let r = |l| self.plan.rate(l);
        let _ = writeln!(
            out,
            "レート制限 ({:?} プランの値): Light {}/秒, Medium {}/秒, Heavy {}/秒。ホストごとの作成・更新は1日{}回、同じメールアドレスの参加者登録は1日{}回まで",
            self.plan,
            r(Label::Light).max,
            r(Label::Medium).max,
            r(Label::Heavy).max,
            tsunagu_zoom::client::HOST_DAILY_CREATES_UPDATES,
            tsunagu_zoom::client::REGISTRANT_DAILY_ADDS
        );
        let _ = writeln!(
            out,
            "結果: {}",
            if self.ok() {
                "OK（マニュアルの設定に必要なものはそろっています）"
            } else {
                "NG（上の項目を確認してください）"
            }
        );
        out
    }
}

/// Run the check. `host` is the host user's id or email (`me` asks Zoom for the token's own
/// user, which OAuth apps support).
pub async fn run(client: &ZoomClient, org: &Organizer, host: &str) -> Report {
    let method = match &org.auth {
        Auth::S2s(c) => format!("Server-to-Server OAuth (Account ID {}, Client ID {})", c.account_id, c.client_id),
        Auth::OAuth { app, .. } => format!("OAuth アプリ (Client ID {})", app.client_id),
    };
    let token = client.fresh_token(org).await.map(|(_, scopes)| scopes);
    let missing = match &token {
        Ok(granted) => scopes::missing(&granted.join(" ")),
        Err(_) => Vec::new(),
    };
    let host_result = match &token {
        Ok(_) => Some(client.get_user(org, host).await),
        Err(_) => None,
    };
    Report { method, token, missing, host: host_result, host_asked: host.to_string(), plan: org.plan }
}
