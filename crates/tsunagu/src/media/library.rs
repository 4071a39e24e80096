//! An instructor's media: an upload is streamed in, recorded 処理中 together with its
//! conversion job in one transaction, and the job makes it what LINE accepts (完了) or says
//! why it cannot (失敗, with the reason). Stored names are chosen at upload, so a retried job
//! overwrites its own outputs and never stores twice.

use std::path::{Path, PathBuf};

use tokio::io::AsyncRead;
use tsunagu_core::AccountId;
use tsunagu_store::jobs::ClaimedJob;
use tsunagu_store::media::{self as store, MediaFile, MediaStatus, NewMedia, Ready};

use super::convert::{apply, check_for_line};
use super::intake::{ReceiveError, Refusal, Step, inspect, receive};
use super::process::{ProcessError, Tools};
use super::sniff::{Category, Format};
use super::store::new_name;
use crate::app::App;
use crate::jobs::{JobError, Outcome, kinds};

pub fn tools(app: &App) -> Tools {
    Tools { ffmpeg: app.config.media.ffmpeg.clone(), ffprobe: app.config.media.ffprobe.clone() }
}

fn intake_dir(app: &App) -> PathBuf {
    app.config.data.dir.join("media-intake")
}

/// What LINE will be sent for an upload of `format`.
fn output_ext(format: Format) -> &'static str {
    match format {
        Format::Jpeg => "jpg",
        Format::Png | Format::Gif => "png",
        Format::Mp4 | Format::Mov => "mp4",
        Format::Mp3 => "mp3",
        Format::M4a | Format::Wav | Format::Aiff => "m4a",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    Refused(Refusal),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Receive an upload for `account` and queue its conversion. A refused upload leaves nothing.
pub async fn accept<R: AsyncRead + Unpin>(
    app: &App,
    account: AccountId,
    original_name: &str,
    body: R,
) -> Result<i64, UploadError> {
    let got = match receive(&intake_dir(app), body, None).await {
        Ok(g) => g,
        Err(ReceiveError::Refused(r)) => return Err(UploadError::Refused(r)),
        Err(ReceiveError::Io(e)) => return Err(UploadError::Other(e.into())),
    };
    let category = got.format.category();
    let file_name = new_name(output_ext(got.format));
    let preview_name = if category == Category::Audio { String::new() } else { new_name("jpg") };
    let path = got.path.display().to_string();
    let saved = async {
        let mut tx = app.store.begin().await?;
        let new = NewMedia {
            original_name: &original_name.chars().take(200).collect::<String>(),
            category: category_name(category),
            upload_path: &path,
            file_name: &file_name,
            preview_name: &preview_name,
            size: got.size as i64,
        };
        let id = store::insert(&mut tx, account, &new, app.now()).await?;
        let payload = serde_json::json!({"media_id": id});
        crate::jobs::enqueue(&mut tx, app, kinds::MEDIA_CONVERT, &payload, Some(&format!("media:{id}")), 0).await?;
        tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
        Ok::<_, anyhow::Error>(id)
    }
    .await;
    if saved.is_err() {
        let _ = tokio::fs::remove_file(&got.path).await;
    }
    tracing::info!(account_id = account.0, size = got.size, format = got.format.name(), "media upload received");
    Ok(saved?)
}

fn category_name(c: Category) -> &'static str {
    match c {
        Category::Image => "image",
        Category::Video => "video",
        Category::Audio => "audio",
    }
}

/// The `media.convert` job.
pub async fn run(app: &App, job: &ClaimedJob) -> Result<Outcome, JobError> {
    let id = job
        .payload
        .get("media_id")
        .and_then(serde_json::Value::as_i64)
        .ok_or_else(|| JobError::Permanent("media.convert job without media_id".into()))?;
    let Some(m) = ({
        let mut c = app.store.conn().await?;
        store::by_id(&mut c, id).await?
    }) else {
        return Ok(Outcome::Done);
    };
    if m.status != MediaStatus::Processing {
        return Ok(Outcome::Done);
    }
    let work = intake_dir(app).join(format!("work-{id}"));
    let result = convert_one(app, &m, &work).await;
    let _ = tokio::fs::remove_dir_all(&work).await;
    let last = job.attempts >= job.max_attempts;
    let mut c = app.store.conn().await?;
    match result {
        Ok(ready) => {
            let notes = ready.notes.clone();
            let r = Ready {
                size: ready.size as i64,
                duration_ms: ready.duration_ms.map(|d| d as i64),
                width: ready.width.map(i64::from),
                height: ready.height.map(i64::from),
                notes: &notes,
            };
            store::set_ready(&mut c, id, &r, app.now()).await?;
            let _ = tokio::fs::remove_file(&m.upload_path).await;
            tracing::info!(media_id = id, "media ready");
            Ok(Outcome::Done)
        }
        Err(Failure::Refused(r)) => {
            store::set_failed(&mut c, id, &r.message_ja(), app.now()).await?;
            let _ = tokio::fs::remove_file(&m.upload_path).await;
            tracing::info!(media_id = id, code = r.code(), "media refused");
            Ok(Outcome::Done)
        }
        Err(Failure::Retry(e)) if !last => Err(JobError::Retry(e)),
        Err(Failure::Retry(e) | Failure::Permanent(e)) => {
            let reason = "このファイルを LINE で送れる形に変換できませんでした。元のファイルを書き出し直すか、別の形式で保存してからアップロードし直してください。";
            store::set_failed(&mut c, id, reason, app.now()).await?;
            tracing::warn!(media_id = id, error = %e, "media conversion failed");
            Ok(Outcome::Done)
        }
    }
}

enum Failure {
    Refused(Refusal),
    Retry(String),
    Permanent(String),
}

impl From<ProcessError> for Failure {
    fn from(e: ProcessError) -> Self {
        match e {
            ProcessError::Failed { .. } => Failure::Permanent(e.to_string()),
            ProcessError::Missing { .. } => Failure::Retry(e.to_string()),
            other => Failure::Retry(other.to_string()),
        }
    }
}

async fn convert_one(app: &App, m: &MediaFile, work: &Path) -> Result<super::intake::Inspection, Failure> {
    let t = tools(app);
    let upload = Path::new(&m.upload_path);
    let found = inspect(&t, upload).await.map_err(|r| match r {
        Refusal::ToolMissing { detail } => Failure::Retry(detail),
        other => Failure::Refused(other),
    })?;
    tokio::fs::create_dir_all(work).await.map_err(|e| Failure::Retry(e.to_string()))?;
    let ext = m.file_name.rsplit('.').next().unwrap_or("bin");
    let mut main = upload.to_path_buf();
    for step in found.conversion.iter().filter(|s| **s != Step::Preview) {
        let out = work.join(format!("main.{ext}"));
        apply(&t, *step, &main, &out).await?;
        main = out;
    }
    let checked = check_for_line(&t, found.category, &main).await.map_err(Failure::Permanent)?;
    let preview = work.join("preview.jpg");
    if found.conversion.contains(&Step::Preview) {
        apply(&t, Step::Preview, &main, &preview).await?;
        check_for_line(&t, Category::Image, &preview).await.map_err(Failure::Permanent)?;
    }
    let put = |name: String, path: PathBuf| async move {
        app.media_store.put_file(&name, &path).await.map_err(|e| Failure::Retry(format!("storing {name}: {e}")))
    };
    put(m.file_name.clone(), main.clone()).await?;
    if found.conversion.contains(&Step::Preview) && !m.preview_name.is_empty() {
        put(m.preview_name.clone(), preview).await?;
    }
    let mut ready = checked;
    ready.notes = found.notes;
    Ok(ready)
}
