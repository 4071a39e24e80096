//! Media for step messages: the course manual promises uploads LINE does not all accept
//! (NOTES §3). The intake decides what a file is from its content and refuses what cannot be
//! used ([`intake`]); ffmpeg/ffprobe run as supervised subprocesses ([`process`], [`probe`]),
//! each told how to read its input and to read nothing else ([`input`]).

pub mod convert;
pub mod input;
pub mod intake;
pub mod jobs;
pub mod library;
pub mod probe;
pub mod process;
pub mod sniff;
pub mod store;
pub mod web;

use std::path::Path;

use serde_json::json;

/// `tsunagu media inspect FILE`: what the intake would decide, as JSON. Exit status 0 when the
/// file would be accepted, 1 when refused.
pub async fn inspect_json(tools: &process::Tools, path: &Path) -> (bool, serde_json::Value) {
    let file = path.display().to_string();
    match intake::inspect(tools, path).await {
        Ok(found) => {
            let mut v = serde_json::to_value(&found).unwrap_or_default();
            v["file"] = json!(file);
            v["accepted"] = json!(true);
            (true, v)
        }
        Err(refusal) => {
            let mut v =
                json!({"file": file, "accepted": false, "code": refusal.code(), "message": refusal.message_ja()});
            if let intake::Refusal::Damaged { detail, .. }
            | intake::Refusal::ToolMissing { detail }
            | intake::Refusal::TimedOut { detail }
            | intake::Refusal::Unavailable { detail } = &refusal
            {
                v["detail"] = json!(detail);
            }
            if let intake::Refusal::TooManyPixels { width, height } = &refusal {
                (v["width"], v["height"]) = (json!(width), json!(height));
            }
            (false, v)
        }
    }
}

/// Said at start when ffmpeg/ffprobe are missing: which uploads are then unavailable.
pub async fn warn_if_tools_missing(tools: &process::Tools) -> bool {
    match process::available(tools).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "ffmpeg/ffprobe unavailable: media uploads (images, video, audio) are refused");
            eprintln!(
                "ffmpeg が見つかりません（{e}）。ステップ配信の画像・動画・音声は確認も変換もできないため、アップロードを受け付けません。Debian では `apt-get install ffmpeg` で入ります。\nffmpeg/ffprobe not found: media uploads (images, video, audio) are unavailable until ffmpeg is installed."
            );
            false
        }
    }
}

/// LINE fetches media only over HTTPS: `serve` refuses a non-HTTPS `http.public_url` unless
/// `media.allow_http` is set (development and tests).
pub fn require_https(config: &crate::config::Config) -> anyhow::Result<()> {
    let url = &config.http.public_url;
    if url.starts_with("https://") {
        return Ok(());
    }
    if config.media.allow_http {
        tracing::warn!(public_url = %url, "media.allow_http: media is served over plain http; LINE will not fetch it");
        eprintln!(
            "media.allow_http = true のため、http.public_url（{url}）が HTTPS でなくても起動します。LINE は HTTPS の URL からしかメディアを取得しないため、この設定ではステップ配信の画像・音声・動画は届きません（開発・テスト用の設定です）。"
        );
        return Ok(());
    }
    anyhow::bail!(
        "http.public_url が HTTPS ではありません（{url}）。LINE は HTTPS の URL からしか画像・動画・音声を取得しないため、https:// で始まる公開 URL（TSUNAGU_HTTP__PUBLIC_URL）を設定してください。開発やテストだけなら media.allow_http = true で起動できます（その場合 LINE にはメディアが届きません）。\nhttp.public_url {url} is not HTTPS: LINE fetches media only over HTTPS. Set an https:// public URL, or media.allow_http = true for development and tests."
    )
}

pub use jobs::job_kinds;

/// ステップ配信のメディア (upload, list, delete) and the public media files LINE fetches.
pub fn routes() -> axum::Router<crate::app::SharedApp> {
    use axum::extract::DefaultBodyLimit;
    use axum::routing::{get, post, put};
    axum::Router::new()
        .route("/media/{name}", get(store::serve).head(store::serve))
        .route("/courses/media", get(web::page))
        .route("/courses/media/upload", put(web::upload).layer(DefaultBodyLimit::disable()))
        .route("/courses/media/{id}/status", get(web::status))
        .route("/courses/media/{id}/delete", post(web::delete))
}
