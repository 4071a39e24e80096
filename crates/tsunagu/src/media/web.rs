//! ステップ配信のメディア: an instructor uploads images, audio and video for step messages
//! and sees each file's state (処理中 / 完了 / 失敗 with the reason). The upload streams the
//! request body straight to the intake (`PUT /courses/media/upload`, sent by
//! `assets/media.js` with the CSRF token in `X-CSRF-Token`): nothing holds the file in memory.

use askama::Template;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use futures_util::TryStreamExt;
use serde_json::json;
use tsunagu_core::Feature;
use tsunagu_store::media::{self as store, MediaStatus};

use crate::app::SharedApp;
use crate::clock::format_local;
use crate::media::intake::Refusal;
use crate::media::library::{UploadError, accept};
use crate::web::chrome::Chrome;
use crate::web::context::flash_redirect;
use crate::web::error::AppError;
use crate::web::session::Auth;

const PAGE: &str = "/courses/media";

struct Row {
    id: i64,
    name: String,
    kind: &'static str,
    status: &'static str,
    status_code: &'static str,
    detail: String,
    size: String,
    length: String,
    received: String,
    url: Option<String>,
    preview: Option<String>,
}

#[derive(Template)]
#[template(path = "media.html")]
struct MediaPage {
    chrome: Chrome,
    plan_message: Option<&'static str>,
    rows: Vec<Row>,
    processing: bool,
}

fn human_size(bytes: i64) -> String {
    let b = bytes.max(0) as f64;
    if b >= 1024.0 * 1024.0 { format!("{:.1}MB", b / 1024.0 / 1024.0) } else { format!("{:.0}KB", (b / 1024.0).ceil()) }
}

fn length(ms: Option<i64>) -> String {
    match ms {
        Some(ms) => {
            let s = (ms + 500) / 1000;
            format!("{}分{:02}秒", s / 60, s % 60)
        }
        None => String::new(),
    }
}

pub async fn page(State(app): State<SharedApp>, auth: Auth) -> Result<Html<String>, AppError> {
    let plan_message = (!auth.account.plan.allows(Feature::LineLink)).then(|| Feature::LineLink.upgrade_message());
    // A file whose conversion ended without a result is shown as 失敗, not 処理中 forever.
    // Their leftovers are removed in the background: a slow store does not hold the page.
    match crate::media::library::settle_orphans(&app, Some(auth.account.id)).await {
        Ok(settled) if !settled.is_empty() => {
            let app = app.clone();
            tokio::spawn(async move { settled.clean_up(&app).await });
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "settling unfinished media failed"),
    }
    let files = {
        let mut c = app.store.conn().await?;
        store::list(&mut c, auth.account.id).await?
    };
    let tz = &auth.account.time_zone;
    let rows: Vec<Row> = files
        .iter()
        .map(|m| Row {
            id: m.id,
            name: m.original_name.clone(),
            kind: match m.category.as_str() {
                "image" => "画像",
                "video" => "動画",
                _ => "音声",
            },
            status: m.status.label_ja(),
            status_code: m.status.as_str(),
            detail: if m.status == MediaStatus::Failed { m.reason.clone() } else { m.notes.join(" ") },
            size: human_size(m.size),
            length: length(m.duration_ms),
            received: format_local(m.created_at, tz),
            url: (m.status == MediaStatus::Ready).then(|| crate::media::store::url(&app.config, &m.file_name)),
            preview: (m.status == MediaStatus::Ready && !m.preview_name.is_empty())
                .then(|| crate::media::store::url(&app.config, &m.preview_name)),
        })
        .collect();
    let processing = files.iter().any(|m| m.status == MediaStatus::Processing);
    let page =
        MediaPage {
            chrome: Chrome::console(&auth, "media", "ステップ配信のメディア"), plan_message, rows, processing
        };
    Ok(Html(page.render()?))
}

fn answer(status: StatusCode, ok: bool, message: String) -> Response {
    (status, Json(json!({"ok": ok, "message": message}))).into_response()
}

/// `PUT /courses/media/upload` with the file as the body and its name in `X-File-Name`
/// (percent-encoded UTF-8).
pub async fn upload(State(app): State<SharedApp>, auth: Auth, headers: HeaderMap, body: Body) -> Response {
    if !auth.account.plan.allows(Feature::LineLink) {
        return answer(StatusCode::FORBIDDEN, false, Feature::LineLink.upgrade_message().into());
    }
    let raw = headers.get("x-file-name").and_then(|v| v.to_str().ok()).unwrap_or("");
    let name = percent_decode(raw);
    let name = if name.trim().is_empty() { "（名前なし）".to_string() } else { name };
    let reader = tokio_util::io::StreamReader::new(body.into_data_stream().map_err(std::io::Error::other));
    match accept(&app, auth.account.id, &name, reader).await {
        Ok(id) => {
            let message = format!(
                "「{name}」を受け付けました。LINE で送れる形に変換しています。終わると状態が「完了」になります。"
            );
            (StatusCode::OK, Json(json!({"ok": true, "message": message, "id": id}))).into_response()
        }
        Err(UploadError::Refused(r)) => {
            tracing::info!(account = %auth.account.id, code = r.code(), "media upload refused");
            let status = match r {
                Refusal::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                Refusal::ToolMissing { .. } | Refusal::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            answer(status, false, format!("「{name}」は受け付けられませんでした。{}", r.message_ja()))
        }
        Err(UploadError::Other(e)) => {
            tracing::warn!(error = %e, "media upload failed");
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                false,
                "アップロードを保存できませんでした。しばらくしてからもう一度お試しください。".into(),
            )
        }
    }
}

/// `GET /courses/media/{id}/status`: one file's state, for a page that uploaded it in place
/// (the message form): `status` is `processing`, `ready` or `failed`, `label` what a select
/// shows for it. Another account's file answers 404.
pub async fn status(State(app): State<SharedApp>, auth: Auth, Path(id): Path<String>) -> Result<Response, AppError> {
    let id: i64 = id.parse().map_err(|_| AppError::NotFound)?;
    let m = {
        let mut c = app.store.read().await?;
        store::get(&mut c, auth.account.id, id).await?.ok_or(AppError::NotFound)?
    };
    let kind = match m.category.as_str() {
        "image" => "画像",
        "video" => "動画",
        _ => "音声",
    };
    Ok(Json(json!({
        "id": m.id,
        "status": m.status.as_str(),
        "category": m.category,
        "label": format!("{kind}: {}（{}）", m.original_name, m.status.label_ja()),
        "reason": m.reason,
    }))
    .into_response())
}

/// `POST /courses/media/{id}/delete` (the row's ［削除］ button).
pub async fn delete(State(app): State<SharedApp>, auth: Auth, Path(id): Path<String>) -> Result<Response, AppError> {
    let id: i64 = id.parse().map_err(|_| AppError::NotFound)?;
    Ok(match crate::media::library::delete(&app, auth.account.id, id).await? {
        store::Deleted::Removed(m) => flash_redirect(
            &app,
            PAGE,
            "success",
            &format!("「{}」を削除しました。すでに LINE で送ったメッセージからは消えません。", m.original_name),
        ),
        store::Deleted::Processing => flash_redirect(
            &app,
            PAGE,
            "error",
            "変換中のファイルは削除できません。状態が「完了」か「失敗」になってから削除してください。",
        ),
        store::Deleted::InUse(n) => flash_redirect(
            &app,
            PAGE,
            "error",
            &format!(
                "このファイルは {n} 件のステップ配信メッセージまたはレッスンで使われているため削除できません。先にそのメッセージ（LINEステップ配信設定）やレッスンから外してください。"
            ),
        ),
        store::Deleted::NotFound => {
            flash_redirect(&app, PAGE, "info", "このファイルはすでに削除されたか、存在しません。")
        }
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).chars().filter(|c| !c.is_control()).take(200).collect()
}
