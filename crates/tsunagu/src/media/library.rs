//! An instructor's media: an upload is streamed in, recorded 処理中 together with its
//! conversion job in one transaction, and the job makes it what LINE accepts (完了) or says
//! why it cannot (失敗, with the reason). Stored names are chosen at upload, so a retried job
//! overwrites its own outputs and never stores twice.

use std::path::{Path, PathBuf};

use tokio::io::AsyncRead;
use tsunagu_core::AccountId;
use tsunagu_store::jobs::ClaimedJob;
use tsunagu_store::media::{self as store, MediaFile, MediaStatus, NewMedia, Ready};

use super::convert::{CheckError, GENERIC_JA, TIMEOUT_JA, apply, check_for_line};
use super::intake::{Inspection, ReceiveError, Refusal, Step, inspect, receive};
use super::process::{ProcessError, Tools};
use super::sniff::{Category, Format};
use super::store::new_name;
use crate::app::App;
use crate::jobs::{JobError, Outcome, kinds};

pub fn tools(app: &App) -> Tools {
    Tools::from_config(&app.config)
}

fn intake_dir(app: &App) -> PathBuf {
    app.config.data.dir.join("media-intake")
}

/// The extension of what LINE will be sent, from the first bytes (chosen at upload) ...
fn output_ext(format: Format) -> &'static str {
    match format {
        Format::Jpeg => "jpg",
        Format::Png | Format::Gif => "png",
        Format::Mp4 | Format::Mov => "mp4",
        Format::Mp3 => "mp3",
        Format::M4a | Format::Wav | Format::Aiff => "m4a",
    }
}

/// ... and from what the job found inside (an MP4 with sound only is M4A audio; an ID3-tagged
/// file holding AAC becomes M4A).
fn output_ext_found(found: &Inspection) -> &'static str {
    if found.conversion.contains(&Step::ToM4a) { "m4a" } else { output_ext(found.format) }
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
    // Without ffmpeg nothing can be checked: say so before the instructor sends 200MB.
    if let Err(e) = super::process::available(&tools(app)).await {
        let detail = e.to_string();
        return Err(UploadError::Refused(match e {
            // Absent or broken (cannot start, fails at `-version`): the operator must act.
            ProcessError::Missing { .. } | ProcessError::Failed { .. } => Refusal::ToolMissing { detail },
            // Out of processes, memory or file handles: passing. Anything else that keeps it
            // from starting (not executable, built for another processor) is the operator's.
            ProcessError::Spawn { source, .. } if !matches!(source.raw_os_error(), Some(11 | 12 | 23 | 24)) => {
                Refusal::ToolMissing { detail }
            }
            _ => Refusal::Unavailable { detail },
        }));
    }
    let got = match receive(&intake_dir(app), body, None).await {
        Ok(g) => g,
        Err(ReceiveError::Refused(r)) => return Err(UploadError::Refused(r)),
        Err(ReceiveError::Io(e)) => return Err(UploadError::Other(e.into())),
    };
    // With shared storage (S3) any instance's worker may convert the file: the upload goes
    // to the store too, not only to this machine's disk.
    let shared = app.config.media.storage == "s3";
    let upload_path = if shared {
        let stem = got.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let key = format!("{INTAKE_PREFIX}{stem}.{}", super::intake::UPLOAD_EXT);
        let put = app.media_store.put_file(&key, &got.path).await;
        let _ = tokio::fs::remove_file(&got.path).await;
        put?;
        format!("{STORED}{key}")
    } else {
        got.path.display().to_string()
    };
    let category = got.format.category();
    let file_name = new_name(output_ext(got.format));
    let preview_name = if category == Category::Audio { String::new() } else { new_name("jpg") };
    let saved = async {
        let mut tx = app.store.begin().await?;
        let new = NewMedia {
            original_name: &original_name.chars().take(200).collect::<String>(),
            category: category_name(category),
            upload_path: &upload_path,
            file_name: &file_name,
            preview_name: &preview_name,
            size: got.size as i64,
        };
        let id = store::insert(&mut tx, account, &new, app.now()).await?;
        let payload = serde_json::json!({"media_id": id});
        // A job already holding this key would be taken for ours and the file never converted
        // (ids are not reused, so this only guards against a schema gone wrong): refuse instead.
        crate::jobs::enqueue(&mut tx, app, kinds::MEDIA_CONVERT, &payload, Some(&format!("media:{id}")), 0)
            .await?
            .ok_or_else(|| anyhow::anyhow!("a media.convert job for media {id} exists already"))?;
        tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
        crate::jobs::wake(app);
        Ok::<_, anyhow::Error>(id)
    }
    .await;
    if saved.is_err() {
        remove_upload(app, &upload_path).await;
    }
    tracing::info!(account_id = account.0, size = got.size, format = got.format.name(), "media upload received");
    Ok(saved?)
}

/// `upload_path` of an upload kept in the media store (shared by every instance) rather than
/// on the receiving machine's disk; never served (`/media/` names have no folder).
const STORED: &str = "store:";
const INTAKE_PREFIX: &str = "intake/";

async fn remove_upload(app: &App, upload_path: &str) {
    match upload_path.strip_prefix(STORED) {
        Some(key) => {
            let _ = app.media_store.delete(key).await;
        }
        None => {
            let _ = tokio::fs::remove_file(upload_path).await;
        }
    }
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
    // Each run converts in a new folder of its own (see `convert_one`), named so that no one
    // can name another run's folder in advance.
    let work = intake_dir(app).join(format!("work-{id}-{}", crate::crypto::random_hex(16)));
    let result = convert_one(app, &m, &work).await;
    let _ = tokio::fs::remove_dir_all(&work).await;
    let last = job.attempts >= job.max_attempts;
    let mut c = app.store.conn().await?;
    let reason = match result {
        Ok(done) => {
            let r = Ready {
                category: category_name(done.found.category),
                file_name: &done.file_name,
                preview_name: &done.preview_name,
                size: done.found.size as i64,
                duration_ms: done.found.duration_ms.map(|d| d as i64),
                width: done.found.width.map(i64::from),
                height: done.found.height.map(i64::from),
                notes: &done.found.notes,
            };
            if store::set_ready(&mut c, id, &r, app.now()).await? {
                remove_upload(app, &m.upload_path).await;
                tracing::info!(media_id = id, "media ready");
            } else {
                settled_elsewhere(app, &mut c, &m).await?;
            }
            return Ok(Outcome::Done);
        }
        Err(Failure::Refused(r)) => {
            tracing::info!(media_id = id, code = r.code(), "media refused");
            r.message_ja()
        }
        Err(Failure::Retry { log, .. }) if !last => return Err(JobError::Retry(log)),
        Err(Failure::Retry { log, reason } | Failure::Permanent { log, reason }) => {
            tracing::warn!(media_id = id, error = %log, "media conversion failed");
            reason
        }
    };
    if store::set_failed(&mut c, id, &reason, app.now()).await? {
        discard(app, &m).await;
    } else {
        settled_elsewhere(app, &mut c, &m).await?;
    }
    Ok(Outcome::Done)
}

/// Another run settled the file first (a job whose lease lapsed runs twice; a stopped file is
/// marked 失敗 by `settle_orphans`). Both runs store under the same names, so what this run
/// stored belongs to the row as it is now: a 完了 file keeps it; a 失敗 one keeps nothing,
/// including what this run stored after that one cleaned up.
async fn settled_elsewhere(app: &App, c: &mut tsunagu_store::AnyConnection, m: &MediaFile) -> Result<(), JobError> {
    let now = store::by_id(c, m.id).await?;
    tracing::info!(media_id = m.id, status = ?now.as_ref().map(|n| n.status), "media settled by another run");
    if now.is_none_or(|n| n.status == MediaStatus::Failed) {
        discard(app, m).await;
    }
    Ok(())
}

/// A file that ended 失敗 keeps nothing: its upload and anything already stored for it.
async fn discard(app: &App, m: &MediaFile) {
    remove_upload(app, &m.upload_path).await;
    for name in stored_names(m) {
        // Most were never stored; a miss is fine.
        let _ = app.media_store.delete(&name).await;
    }
}

/// Every name a file may have in the media store: what a 完了 file holds, and for any other
/// whatever its conversion may have stored before it stopped (the output under each
/// extension a conversion can choose, and the preview).
fn stored_names(m: &MediaFile) -> Vec<String> {
    let mut names = if m.status == MediaStatus::Ready {
        vec![m.file_name.clone()]
    } else {
        let ext = m.file_name.rsplit('.').next().unwrap_or("");
        let stem = m.file_name.strip_suffix(&format!(".{ext}")).unwrap_or(&m.file_name);
        ["jpg", "png", "mp4", "mp3", "m4a"].iter().map(|e| format!("{stem}.{e}")).collect()
    };
    if !m.preview_name.is_empty() {
        names.push(m.preview_name.clone());
    }
    names
}

/// The instructor deletes one of their files (完了 or 失敗; one still 処理中 is refused, its
/// conversion would store files for a row that is gone). The row goes and a `media.remove`
/// job for its stored files is queued in one transaction, so the files are removed even when
/// the store is down right now or the process stops.
pub async fn delete(app: &App, account: AccountId, id: i64) -> anyhow::Result<store::Deleted> {
    let mut tx = app.store.begin().await?;
    let deleted = store::delete(&mut tx, account, id).await?;
    if let store::Deleted::Removed(m) = &deleted {
        let payload = serde_json::json!({"media_id": m.id, "upload_path": m.upload_path, "names": stored_names(m)});
        crate::jobs::enqueue(&mut tx, app, kinds::MEDIA_REMOVE, &payload, None, 0).await?;
        tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
        crate::jobs::wake(app);
        tracing::info!(media_id = m.id, account_id = account.0, "media deleted");
    }
    Ok(deleted)
}

/// The `media.remove` job: a deleted file's stored copies (retried while the store fails).
pub async fn remove_stored(app: &App, job: &ClaimedJob) -> Result<Outcome, JobError> {
    let names = job.payload.get("names").and_then(serde_json::Value::as_array).cloned().unwrap_or_default();
    for name in names.iter().filter_map(serde_json::Value::as_str) {
        if let Err(e) = app.media_store.delete(name).await {
            return Err(JobError::Retry(format!("removing {name}: {e:#}")));
        }
    }
    // An upload left over (a 失敗 file's) goes too; the hourly intake sweep is the backstop.
    if let Some(upload) = job.payload.get("upload_path").and_then(serde_json::Value::as_str) {
        remove_upload(app, upload).await;
    }
    Ok(Outcome::Done)
}

/// Files left 処理中 whose job ended for good without settling them (the worker died on the
/// last attempt, the database was down, the handler panicked) become 失敗 with a reason.
/// Run by the media page (for its account) and by maintenance. What they had stored is
/// removed by [`Settled::clean_up`], which the page runs in the background (a slow store must
/// not hold the page) and maintenance awaits.
pub async fn settle_orphans(app: &App, account: Option<AccountId>) -> anyhow::Result<Settled> {
    let mut c = app.store.conn().await?;
    let mut settled = Vec::new();
    for m in store::orphaned(&mut c, account).await? {
        // The update re-checks that no job is queued or running for the file, so a retry
        // queued since the list was read keeps it 処理中.
        if store::fail_orphan(&mut c, m.id, STOPPED_JA, app.now()).await? {
            tracing::warn!(media_id = m.id, "media conversion ended without a result; marked failed");
            settled.push(m);
        }
    }
    Ok(Settled(settled))
}

/// Files [`settle_orphans`] marked 失敗, whose leftovers are still to be removed.
#[must_use = "their uploads stay until clean_up runs"]
pub struct Settled(Vec<MediaFile>);

impl Settled {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub async fn clean_up(self, app: &App) {
        for m in &self.0 {
            discard(app, m).await;
        }
    }
}

/// At start and hourly (maintenance): uploads that were still arriving when the process
/// stopped (`.part`), work folders of interrupted conversions, and uploads no 処理中 file
/// needs any more, on this machine's disk and, with S3, in the bucket's `intake/`.
///
/// Only what has not changed for `min_age` ([`INTAKE_STALE`] at start): another process
/// sharing the data directory may be receiving or converting right now.
pub async fn clean_intake(app: &App, min_age: std::time::Duration) -> anyhow::Result<usize> {
    let pending = {
        let mut c = app.store.conn().await?;
        store::pending_uploads(&mut c).await?
    };
    let mut removed = 0;
    // With shared storage, uploads wait in the bucket; one whose file was settled while its
    // clean-up could not finish (a restart, the store down) would stay there for ever.
    // `accept` stores an upload a moment before its row commits: far less than `min_age`, so
    // an object this old without a 処理中 row is nobody's.
    if app.config.media.storage == "s3" {
        // The bucket's clock, like the disk's, is the wall clock (not the app's).
        let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let before = i64::try_from(wall.saturating_sub(min_age).as_millis()).unwrap_or(i64::MAX);
        match app.media_store.list_older(INTAKE_PREFIX, before).await {
            Ok(keys) => {
                for key in keys {
                    if !pending.iter().any(|(_, p)| p.strip_prefix(STORED) == Some(key.as_str()))
                        && app.media_store.delete(&key).await.is_ok()
                    {
                        removed += 1;
                    }
                }
            }
            // The disk is still swept; the bucket is tried again next hour.
            Err(e) => tracing::warn!(error = %e, "listing the media bucket's intake failed"),
        }
    }
    let dir = intake_dir(app);
    let Ok(mut entries) = tokio::fs::read_dir(&dir).await else { return Ok(removed) };
    let needed: std::collections::HashSet<PathBuf> = pending.iter().map(|(_, p)| PathBuf::from(p)).collect();
    let converting: std::collections::HashSet<i64> = pending.iter().map(|(id, _)| *id).collect();
    while let Some(e) = entries.next_entry().await? {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        // An entry that vanished meanwhile (another process cleaned it) is skipped.
        let Ok(meta) = e.metadata().await else { continue };
        let age = meta.modified().ok().and_then(|m| m.elapsed().ok()).unwrap_or_default();
        if age < min_age {
            continue;
        }
        // A work folder (`work-{id}-…`) of a file still 処理中 may belong to a long conversion
        // in progress (its folder's time does not change while ffmpeg writes inside); it goes
        // once the file is settled.
        let gone = if let Some(rest) = name.strip_prefix("work-").filter(|_| meta.is_dir()) {
            let id = rest.split('-').next().and_then(|id| id.parse::<i64>().ok());
            if id.is_some_and(|id| converting.contains(&id)) {
                continue;
            }
            tokio::fs::remove_dir_all(&path).await
        } else if name.ends_with(".part") || (name.ends_with(super::intake::UPLOAD_EXT) && !needed.contains(&path)) {
            tokio::fs::remove_file(&path).await
        } else {
            continue;
        };
        if gone.is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(removed, dir = %dir.display(), "media intake cleaned");
    }
    Ok(removed)
}

/// Longer than any conversion may run (its timeout) with a margin: intake files untouched
/// this long belong to nobody.
pub const INTAKE_STALE: std::time::Duration =
    std::time::Duration::from_secs(super::convert::CONVERT_TIMEOUT.as_secs() + 600);

const TOOL_MISSING_JA: &str = "サーバーの ffmpeg が見つからないか正しく動かないため変換できませんでした（ファイルの問題ではありません）。運営者に連絡してください。";
const UNAVAILABLE_JA: &str = "サーバー側の問題で、何度か試しましたが変換を完了できませんでした。お手数ですが、時間をおいてもう一度アップロードしてください。続く場合は運営者に連絡してください。";
const STOPPED_JA: &str = "変換の途中で処理が止まったため完了できませんでした（サーバーの再起動などが考えられます）。お手数ですが、もう一度アップロードしてください。同じファイルで繰り返し止まる場合は、書き出し直してからお試しください。";

enum Failure {
    /// The file itself: final, with the intake's reason.
    Refused(Refusal),
    /// Passing: the job tries again; `reason` is what the instructor reads if it never works.
    Retry {
        log: String,
        reason: String,
    },
    Permanent {
        log: String,
        reason: String,
    },
}

impl Failure {
    fn retry(log: impl Into<String>, reason: &str) -> Failure {
        Failure::Retry { log: log.into(), reason: reason.into() }
    }

    /// A refusal from a look at a file: the machine's (passing) or the file's (final).
    fn from_refusal(r: Refusal) -> Failure {
        match r {
            Refusal::ToolMissing { detail } => Failure::retry(detail, TOOL_MISSING_JA),
            Refusal::Unavailable { detail } => Failure::retry(detail, UNAVAILABLE_JA),
            other => Failure::Refused(other),
        }
    }
}

impl From<CheckError> for Failure {
    fn from(e: CheckError) -> Self {
        match e {
            CheckError::Unfit { log, reason } => Failure::Permanent { log, reason },
            CheckError::Passing(r) => Failure::from_refusal(r),
        }
    }
}

impl From<ProcessError> for Failure {
    fn from(e: ProcessError) -> Self {
        let log = e.to_string();
        match e {
            ProcessError::Failed { .. } => Failure::Permanent { log, reason: GENERIC_JA.into() },
            ProcessError::Timeout { .. } => Failure::Permanent { log, reason: TIMEOUT_JA.into() },
            ProcessError::Missing { .. } => Failure::retry(log, TOOL_MISSING_JA),
            // Killed from outside (out of memory, a shutdown), could not start, a read error:
            // the machine's trouble; try again.
            ProcessError::Killed { .. } | ProcessError::Spawn { .. } | ProcessError::Io { .. } => {
                Failure::retry(log, UNAVAILABLE_JA)
            }
        }
    }
}

struct Converted {
    found: Inspection,
    file_name: String,
    preview_name: String,
}

/// Convert in `work`, a folder made new for this run and holding only this upload and what is
/// made of it: ffmpeg never runs beside other instructors' uploads or conversions, so a bare
/// file name inside the upload finds only this upload's own files (and ffmpeg is told to
/// follow no names at all: see `input`).
async fn convert_one(app: &App, m: &MediaFile, work: &Path) -> Result<Converted, Failure> {
    let t = tools(app);
    let unavailable = |e: std::io::Error| Failure::retry(format!("{}: {e}", work.display()), UNAVAILABLE_JA);
    if let Some(parent) = work.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(unavailable)?;
    }
    // `create` (not `create_all`): a folder that exists already is not this run's.
    tokio::fs::DirBuilder::new().mode(0o700).create(work).await.map_err(unavailable)?;
    let upload = work.join(format!("upload.{}", super::intake::UPLOAD_EXT));
    match m.upload_path.strip_prefix(STORED) {
        Some(key) => {
            app.media_store
                .get_file(key, &upload)
                .await
                .map_err(|e| Failure::retry(format!("fetching {key}: {e}"), UNAVAILABLE_JA))?;
        }
        None => {
            // A second name for the same bytes (a copy where the disk cannot link).
            if tokio::fs::hard_link(&m.upload_path, &upload).await.is_err() {
                tokio::fs::copy(&m.upload_path, &upload).await.map_err(unavailable)?;
            }
        }
    }
    let upload = upload.as_path();
    let found = inspect(&t, upload).await.map_err(Failure::from_refusal)?;
    // The names were chosen at upload from the first bytes; what the file turned out to be
    // (sound only in an MP4, AAC behind an ID3 tag) may change the extension, never the
    // random stem, so a retried job still overwrites its own outputs.
    let ext = output_ext_found(&found);
    let stem = m.file_name.rsplit_once('.').map_or(m.file_name.as_str(), |(s, _)| s);
    let file_name = format!("{stem}.{ext}");
    let wants_preview = found.conversion.contains(&Step::Preview);
    let preview_name = match (wants_preview, m.preview_name.is_empty()) {
        (false, _) => String::new(),
        (true, false) => m.preview_name.clone(),
        (true, true) => format!("{stem}-preview.jpg"),
    };
    let mut main = upload.to_path_buf();
    for step in found.conversion.iter().filter(|s| **s != Step::Preview) {
        let out = work.join(format!("main.{ext}"));
        apply(&t, *step, &main, &out).await?;
        main = out;
    }
    let checked = check_for_line(&t, found.category, &main).await?;
    let preview = work.join("preview.jpg");
    if wants_preview {
        apply(&t, Step::Preview, &main, &preview).await?;
        check_for_line(&t, Category::Image, &preview).await?;
    }
    let put = |name: String, path: PathBuf| async move {
        app.media_store
            .put_file(&name, &path)
            .await
            .map_err(|e| Failure::retry(format!("storing {name}: {e}"), UNAVAILABLE_JA))
    };
    put(file_name.clone(), main.clone()).await?;
    if wants_preview {
        put(preview_name.clone(), preview).await?;
    }
    let mut ready = checked;
    ready.notes = found.notes;
    ready.category = found.category;
    Ok(Converted { found: ready, file_name, preview_name })
}
