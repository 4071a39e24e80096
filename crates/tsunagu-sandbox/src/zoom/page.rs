//! The sandbox's own pages: what a demo visitor looks at instead of Zoom's web portal.

use axum::extract::{Path, State};
use axum::response::Html;

use super::ZoomSandbox;

pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn wrap(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"ja\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{t}</title>\
         <style>body{{font-family:system-ui,'Noto Sans CJK JP',sans-serif;margin:1.5rem;max-width:72rem;line-height:1.6}}\
         table{{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}}td,th{{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;font-size:.9rem;word-break:break-all}}\
         th{{background:#f3f3f3}}.note{{color:#555}}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    )
}

/// `GET /`: accounts, meetings and webinars, and their registrants.
pub(crate) async fn index(State(sb): State<ZoomSandbox>) -> Html<String> {
    let g = sb.lock();
    let mut body = String::from(
        "<p class=\"note\">これは Tsunagu のデモ用の Zoom サンドボックスです。本物の Zoom には接続していません。\
         Tsunagu が作成したミーティング・ウェビナーと登録者がここに表示されます。</p>",
    );
    let mut events: Vec<_> = g.api.events.values().collect();
    events.sort_by_key(|e| std::cmp::Reverse(e.created_ms));
    if events.is_empty() {
        body.push_str("<p>まだミーティング・ウェビナーはありません。</p>");
    }
    for e in events {
        body.push_str(&format!(
            "<h2>{}「{}」</h2><p>ID {} ・ アカウント {} ・ ホスト {} ・ 開始 {} ({}) ・ {} 分 ・ 参加者登録: {}</p>",
            if e.webinar { "ウェビナー" } else { "ミーティング" },
            esc(&e.topic),
            e.id,
            esc(&e.account_id),
            esc(&e.host_email),
            esc(&e.local_start()),
            esc(&e.timezone),
            e.duration,
            match e.approval_type() {
                0 => "あり（自動承認）",
                1 => "あり（手動承認）",
                _ => "なし",
            }
        ));
        if e.registrants.is_empty() {
            body.push_str("<p>登録者はいません。</p>");
            continue;
        }
        body.push_str("<table><tr><th>名前</th><th>メールアドレス</th><th>状態</th><th>参加URL</th></tr>");
        for r in &e.registrants {
            body.push_str(&format!(
                "<tr><td>{} {}</td><td>{}</td><td>{}</td><td><a href=\"{u}\">{u}</a></td></tr>",
                esc(&r.last_name),
                esc(&r.first_name),
                esc(&r.email),
                match r.status.as_str() {
                    "approved" => "承認済み",
                    "pending" => "承認待ち",
                    _ => "拒否・キャンセル",
                },
                u = esc(&r.join_url)
            ));
        }
        body.push_str("</table>");
    }
    Html(wrap("Zoom サンドボックス", &body))
}

/// Behind a join URL: the visitor "joined".
pub(crate) async fn joined(Path(id): Path<String>) -> Html<String> {
    Html(wrap(
        "Zoom サンドボックス",
        &format!(
            "<p>（サンドボックス）ミーティング {} に参加しました。本物の Zoom では、ここで Zoom アプリが開きます。</p>",
            esc(&id)
        ),
    ))
}
