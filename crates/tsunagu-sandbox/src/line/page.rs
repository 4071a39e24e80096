//! What a demo visitor looks at: the simulated users with buttons to add or block each official
//! account, and a chat page per user showing, in order, every message the user received.

use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;

use super::{Friendship, LineSandbox};
use crate::zoom::page::{esc, wrap};

pub(crate) async fn index(State(sb): State<LineSandbox>) -> Html<String> {
    let g = sb.lock();
    let mut body = String::from(
        "<p class=\"note\">これは Tsunagu のデモ用の LINE サンドボックスです。本物の LINE には接続していません。</p>",
    );
    if let Some(n) = &g.notice {
        body.push_str(&format!("<p class=\"notice\"><strong>{}</strong></p>", esc(n)));
    }
    let mut channels: Vec<_> = g.channels.values().collect();
    channels.sort_by(|a, b| a.spec.channel_id.cmp(&b.spec.channel_id));
    for u in &g.users {
        body.push_str(&format!(
            "<h2>{}</h2><p><a href=\"/chat/{}\">トーク画面を見る</a></p>",
            esc(&u.display_name),
            esc(&u.user_id)
        ));
        for c in &channels {
            let status = match c.friends.get(&u.user_id) {
                Some(Friendship::Friend) => "友だち",
                Some(Friendship::Blocked) => "ブロック中",
                None => "友だちではありません",
            };
            body.push_str(&format!(
                "<form method=\"post\" action=\"/users/{uid}/follow?channel={cid}\" style=\"display:inline\"><button>友だち追加</button></form> \
                 <form method=\"post\" action=\"/users/{uid}/block?channel={cid}\" style=\"display:inline\"><button>ブロック</button></form> \
                 {name}: {status}<br>",
                uid = esc(&u.user_id),
                cid = esc(&c.spec.channel_id),
                name = esc(&c.spec.display_name),
            ));
        }
    }
    Html(wrap("LINE サンドボックス", &body))
}

pub(crate) async fn chat(State(sb): State<LineSandbox>, Path(user_id): Path<String>) -> Html<String> {
    let g = sb.lock();
    let name = g.user(&user_id).map(|u| u.display_name.clone()).unwrap_or_else(|| user_id.clone());
    let mut body = String::from("<ol class=\"chat\">");
    for r in g.received.iter().filter(|r| r.user_id == user_id) {
        let from = g.channels.get(&r.channel_id).map(|c| c.spec.display_name.clone()).unwrap_or_default();
        let m = &r.message;
        let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let content = match m.get("type").and_then(Value::as_str).unwrap_or("") {
            "text" => format!("<p style=\"white-space:pre-wrap\">{}</p>", esc(&s("text"))),
            "image" => format!("<img src=\"{}\" alt=\"画像\" style=\"max-width:16rem\">", esc(&s("previewImageUrl"))),
            "video" => format!(
                "<video controls preload=\"none\" poster=\"{}\" src=\"{}\" style=\"max-width:16rem\"></video>",
                esc(&s("previewImageUrl")),
                esc(&s("originalContentUrl"))
            ),
            "audio" => format!(
                "<audio controls preload=\"none\" src=\"{}\"></audio> <span>{} 秒</span>",
                esc(&s("originalContentUrl")),
                m.get("duration").and_then(Value::as_i64).unwrap_or(0) / 1000
            ),
            other => format!("<p>（{}）</p>", esc(other)),
        };
        let tokyo = jiff::tz::TimeZone::get("Asia/Tokyo").unwrap_or(jiff::tz::TimeZone::UTC);
        let at = jiff::Timestamp::from_millisecond(r.at_ms)
            .map(|t| t.to_zoned(tokyo).strftime("%-m月%-d日 %H:%M").to_string());
        body.push_str(&format!(
            "<li><strong>{}</strong> <time>{}</time> {}</li>",
            esc(&from),
            esc(&at.unwrap_or_default()),
            content
        ));
    }
    body.push_str("</ol>");
    Html(wrap(&format!("{name} のトーク"), &body))
}

/// Tell the visitor what happened to the webhook the button sent.
fn notice(sb: &LineSandbox, user_id: &str, what: &str, result: Result<u16, String>) {
    let mut g = sb.lock();
    let name = g.user(user_id).map(|u| u.display_name.clone()).unwrap_or_else(|| user_id.to_string());
    g.notice = Some(match result {
        Ok(status) if (200..300).contains(&status) => {
            format!("{name} さんの「{what}」を Webhook で送りました（応答 HTTP {status}）。")
        }
        Ok(status) => format!("{name} さんの「{what}」の Webhook は受け付けられませんでした（応答 HTTP {status}）。"),
        Err(e) if e.contains("no webhook") || e.contains("endpoint") => {
            format!("{name} さんの「{what}」を記録しました（Webhook URL が未設定のため送信していません）。")
        }
        Err(e) => format!("{name} さんの「{what}」の Webhook を送れませんでした: {e}"),
    });
}

#[derive(Deserialize)]
pub(crate) struct ChannelQuery {
    channel: String,
}

pub(crate) async fn follow(
    State(sb): State<LineSandbox>,
    Path(user_id): Path<String>,
    Query(q): Query<ChannelQuery>,
) -> Response {
    let result = sb.follow(&q.channel, &user_id).await;
    notice(&sb, &user_id, "友だち追加", result);
    Redirect::to("/").into_response()
}

pub(crate) async fn block(
    State(sb): State<LineSandbox>,
    Path(user_id): Path<String>,
    Query(q): Query<ChannelQuery>,
) -> Response {
    let result = sb.block(&q.channel, &user_id).await;
    notice(&sb, &user_id, "ブロック", result);
    Redirect::to("/").into_response()
}
