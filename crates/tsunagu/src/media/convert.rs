//! The conversions that make an upload something LINE accepts (NOTES §3), each an ffmpeg run,
//! and the check of every output against LINE's rules before it is marked ready.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use super::input::{Demuxer, demuxer_of};
use super::intake::{Inspection, Refusal, Step, inspect};
use super::process::{ProcessError, Tools, run};
use super::sniff::{Category, Format, MB};

/// LINE's preview image limit.
pub const PREVIEW_MAX: u64 = MB;
/// Generous: a 200MB transcode on two cores takes minutes.
pub const CONVERT_TIMEOUT: Duration = Duration::from_secs(3600);

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(Into::into).collect()
}

/// How ffmpeg is to read `input`: decided from its own first bytes, as the intake does, so
/// that no step reads a file as a format it does not start as (see [`super::input`]).
async fn demuxer(input: &Path) -> Result<Demuxer, ProcessError> {
    match demuxer_of(input).await {
        Ok(Some(d)) => Ok(d),
        Ok(None) => Err(ProcessError::Failed {
            program: "ffmpeg".into(),
            status: "not converted".into(),
            stderr: format!("{}: not one of the allowed formats", input.display()),
        }),
        Err(source) => Err(ProcessError::Io { program: "ffmpeg".into(), source }),
    }
}

async fn ffmpeg(tools: &Tools, input: &Path, middle: &[&str], output: &Path) -> Result<(), ProcessError> {
    let mut a = args(&["-hide_banner", "-nostdin", "-v", "error", "-y"]);
    a.extend(demuxer(input).await?.input_args(input));
    a.extend(args(middle));
    a.push(output.as_os_str().to_owned());
    run(&tools.ffmpeg, a, CONVERT_TIMEOUT, 64 * 1024).await.map(|_| ())
}

/// Apply `step` to `input`, writing `output`.
pub async fn apply(tools: &Tools, step: Step, input: &Path, output: &Path) -> Result<(), ProcessError> {
    match step {
        Step::GifToPng => ffmpeg(tools, input, &["-frames:v", "1", "-f", "image2", "-c:v", "png"], output).await,
        Step::RemuxToMp4 => {
            ffmpeg(
                tools,
                input,
                &["-map", "0:V:0", "-map", "0:a:0?", "-c", "copy", "-movflags", "+faststart", "-f", "mp4"],
                output,
            )
            .await
        }
        Step::TranscodeToMp4 => transcode(tools, input, output).await,
        Step::ToM4a => {
            ffmpeg(tools, input, &["-map", "0:a:0", "-vn", "-c:a", "aac", "-b:a", "192k", "-f", "ipod"], output).await
        }
        Step::Preview => preview(tools, input, output).await,
    }
}

/// At most 1920 px on the long side (LINE's players show no more, and a 4K phone clip
/// re-encoded whole would outgrow 200MB), even sizes for H.264.
const FIT: &str = "scale='min(1920,iw)':'min(1920,ih)':force_original_aspect_ratio=decrease:force_divisible_by=2";
/// HDR (PQ or HLG, BT.2020) to SDR BT.709: to linear light, Hable's curve, back to BT.709.
const TONE_MAP: &str =
    "zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv";

/// H.264 (8-bit 4:2:0)/AAC MP4 with faststart. HDR is tone-mapped to SDR BT.709: converted
/// as it is, it would keep its HLG/PQ tags on 8-bit pictures and look pale on most phones.
async fn transcode(tools: &Tools, input: &Path, output: &Path) -> Result<(), ProcessError> {
    let video = super::probe::probe(tools, input, demuxer(input).await?, super::intake::PROBE_TIMEOUT).await?.video;
    if let Some(v) = video.filter(|v| v.is_hdr()) {
        // HDR is BT.2020: say so where the file does not (zscale finds no path otherwise).
        let unknown = |t: &str| t.is_empty() || t == "unknown" || t == "unspecified";
        let mut tags = Vec::new();
        if unknown(&v.color_primaries) {
            tags.push("color_primaries=bt2020");
        }
        if unknown(&v.color_space) {
            tags.push("colorspace=bt2020nc");
        }
        let fill = if tags.is_empty() { String::new() } else { format!("setparams={},", tags.join(":")) };
        let filters = format!("{FIT},{fill}{TONE_MAP},format=yuv420p");
        match encode(tools, input, &filters, &BT709, output).await {
            // Pale beats nothing: an ffmpeg without zscale, or tags the tone map cannot follow.
            // Still tagged BT.709, so no player treats 8-bit pictures as HDR.
            Err(ProcessError::Failed { stderr, .. }) => {
                tracing::warn!(error = %stderr, "tone mapping failed; converting without it");
                return encode(tools, input, &format!("{FIT},format=yuv420p"), &BT709, output).await;
            }
            other => return other,
        }
    }
    encode(tools, input, FIT, &[], output).await
}

const BT709: [&str; 6] = ["-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709"];

async fn encode(tools: &Tools, input: &Path, filters: &str, extra: &[&str], output: &Path) -> Result<(), ProcessError> {
    let mut middle = vec![
        "-map", "0:V:0", "-map", "0:a:0?", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt",
        "yuv420p", "-vf", filters, // A bitrate ceiling for the same reason as the size cap.
        "-maxrate", "4M", "-bufsize", "8M",
    ];
    middle.extend_from_slice(extra);
    middle.extend(["-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", "-f", "mp4"]);
    ffmpeg(tools, input, &middle, output).await
}

/// A JPEG preview ≤ 1MB: the first frame, at most 1024 px on its long side; smaller and more
/// compressed until it fits.
async fn preview(tools: &Tools, input: &Path, output: &Path) -> Result<(), ProcessError> {
    for (side, q) in [(1024, "3"), (1024, "8"), (640, "10"), (320, "15")] {
        let scale = format!("scale='min({side},iw)':'min({side},ih)':force_original_aspect_ratio=decrease");
        ffmpeg(tools, input, &["-frames:v", "1", "-vf", &scale, "-q:v", q, "-f", "image2", "-c:v", "mjpeg"], output)
            .await?;
        if std::fs::metadata(output).map(|m| m.len()).unwrap_or(u64::MAX) <= PREVIEW_MAX {
            return Ok(());
        }
    }
    Err(ProcessError::Failed { program: "ffmpeg".into(), status: "preview".into(), stderr: "preview over 1MB".into() })
}

/// What the instructor reads when a conversion fails for a reason in the file we cannot name.
pub const GENERIC_JA: &str = "このファイルを LINE で送れる形に変換できませんでした。元のファイルを書き出し直すか、別の形式で保存してからアップロードし直してください。";

/// What the instructor reads when converting or checking its result took too long.
pub const TIMEOUT_JA: &str = "変換に時間がかかりすぎたため中止しました。動画・音声は短く分けるか解像度や音質を下げて、画像は小さくして書き出し直してからアップロードしてください。";

/// Why a converted file cannot be marked ready.
#[derive(Debug)]
pub enum CheckError {
    /// The output is not what LINE accepts: final. `reason` is what the instructor reads.
    Unfit { log: String, reason: String },
    /// The check itself could not run (ffmpeg missing, a timeout, a read error): passing.
    Passing(Refusal),
}

/// Whether a converted file is what LINE accepts for `category` (NOTES §3): images JPEG/PNG
/// ≤ 10MB, previews JPEG ≤ 1MB, video MP4 (H.264) ≤ 200MB, audio MP3/M4A ≤ 200MB with a
/// duration.
pub async fn check_for_line(tools: &Tools, category: Category, path: &Path) -> Result<Inspection, CheckError> {
    let found = inspect(tools, path).await.map_err(|r: Refusal| {
        let reason = match &r {
            Refusal::ToolMissing { .. } | Refusal::Unavailable { .. } => return CheckError::Passing(r),
            // Checking our own output took too long: the conversion's length, not a fault in it.
            Refusal::TimedOut { .. } => TIMEOUT_JA.to_string(),
            Refusal::TooLarge { category, max_bytes, .. } => format!(
                "LINE で送れる形に変換すると{}が {}MB を超えるため、送れません。{}を短く分けるか、解像度や音質を下げて書き出してからアップロードし直してください。",
                category.label_ja(),
                max_bytes / MB,
                category.label_ja()
            ),
            other => other.message_ja(),
        };
        CheckError::Unfit { log: format!("{}: {r}", path.display()), reason }
    })?;
    let ok = match category {
        Category::Image => matches!(found.format, Format::Jpeg | Format::Png) && found.size <= 10 * MB,
        Category::Video => {
            found.format == Format::Mp4 && found.video_codec.as_deref() == Some("h264") && found.size <= 200 * MB
        }
        Category::Audio => {
            matches!(found.format, Format::Mp3 | Format::M4a) && found.duration_ms.is_some() && found.size <= 200 * MB
        }
    };
    if ok {
        Ok(found)
    } else {
        Err(CheckError::Unfit {
            log: format!("{} does not meet LINE's rules for {category:?}: {found:?}", path.display()),
            reason: GENERIC_JA.into(),
        })
    }
}
