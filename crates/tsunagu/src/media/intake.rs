//! What the intake decides for a file: its format from the content, the manual's size limits,
//! the decompression-bomb rule, damage (truncated or corrupt), and the conversions that make it
//! something LINE accepts. Uploads are streamed to disk with the limit enforced while
//! streaming ([`receive`]); a refused file leaves nothing behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::input::{self, Demuxer};
use super::probe::{Probe, probe};
use super::process::{ProcessError, Tools, run_output};
use super::sniff::{self, Category, Format, MAX_PIXELS, MAX_SIDE, MB};

/// Why a file is refused. Each names the rule, in Japanese, for the instructor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Refusal {
    Empty,
    NotAllowed,
    TooLarge {
        category: Category,
        max_bytes: u64,
        size: u64,
    },
    TooManyPixels {
        width: u32,
        height: u32,
    },
    Damaged {
        format: Format,
        detail: String,
    },
    NoContent {
        format: Format,
    },
    ToolMissing {
        detail: String,
    },
    /// Checking the file took far longer than a healthy file of its size needs (a file built to
    /// make ffmpeg slow, or an extreme one): final.
    TimedOut {
        detail: String,
    },
    /// A passing problem on this machine (a process was killed or could not start):
    /// nothing is wrong with the file as far as anyone knows; the job tries again.
    Unavailable {
        detail: String,
    },
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Empty => "media.empty",
            Refusal::NotAllowed => "media.not_allowed",
            Refusal::TooLarge { .. } => "media.too_large",
            Refusal::TooManyPixels { .. } => "media.too_many_pixels",
            Refusal::Damaged { .. } => "media.damaged",
            Refusal::NoContent { .. } => "media.no_content",
            Refusal::ToolMissing { .. } => "media.tool_missing",
            Refusal::TimedOut { .. } => "media.timed_out",
            Refusal::Unavailable { .. } => "media.unavailable",
        }
    }

    pub fn message_ja(&self) -> String {
        match self {
            Refusal::Empty => "ファイルが空です。ファイルを選び直してください。".into(),
            Refusal::NotAllowed => "このファイルは使える形式ではありません。使えるのは、画像 .jpg .jpeg .png .gif（10MB まで）、動画 .mp4 .mov（200MB まで）、音声 .mp3 .wav .aif .aiff .m4a（200MB まで）です。形式はファイルの中身で判定するため、拡張子だけを変えたファイルは使えません。".into(),
            Refusal::TooLarge { category, max_bytes, .. } => format!(
                "{}は {}MB までです。このファイルはそれより大きいため、保存していません。{}の範囲に小さくしてからアップロードしてください。",
                category.label_ja(),
                max_bytes / MB,
                category.allowed_ja()
            ),
            Refusal::TooManyPixels { width, height } => format!(
                "画像のピクセル数が大きすぎます（幅 {width} × 高さ {height}）。1 辺 {MAX_SIDE} ピクセル以下、合計 {} 万ピクセル以下に縮小してからアップロードしてください。",
                MAX_PIXELS / 10_000
            ),
            Refusal::Damaged { format, .. } => format!(
                "{} ファイルが壊れているか、途中で切れています。元のファイルをもう一度書き出して（保存し直して）からアップロードしてください。",
                format.name()
            ),
            Refusal::NoContent { format } => format!(
                "{} ファイルに{}が入っていません。中身のあるファイルを選んでください。",
                format.name(),
                match format.category() {
                    Category::Video => "映像",
                    _ => "音声",
                }
            ),
            Refusal::ToolMissing { .. } => "このサーバーの ffmpeg が見つからないか正しく動かないため、画像・動画・音声を確認できません（ファイルの問題ではありません）。運営者に連絡してください。".into(),
            Refusal::TimedOut { .. } => "このファイルの確認に時間がかかりすぎたため中止しました。元のファイルを書き出し直すか、短く分けてからアップロードしてください。".into(),
            Refusal::Unavailable { .. } => "サーバーが混み合っていて、このファイルを確認できませんでした（ファイルの問題ではありません）。しばらくしてからもう一度お試しください。".into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.code(), self.message_ja())
    }
}

/// A step that turns the upload into what LINE accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// First frame of a GIF as PNG.
    GifToPng,
    /// Same streams into MP4, `faststart`.
    RemuxToMp4,
    /// H.264/AAC MP4, `faststart`.
    TranscodeToMp4,
    /// AAC in M4A.
    ToM4a,
    /// A JPEG preview ≤ 1MB.
    Preview,
}

/// What the intake decided for an accepted file.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub format: Format,
    pub category: Category,
    pub mime: &'static str,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_codec: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_codec: Option<String>,
    pub conversion: Vec<Step>,
    /// What the instructor should know (Japanese).
    pub notes: Vec<String>,
    /// How ffmpeg reads the file.
    #[serde(skip)]
    pub demuxer: Demuxer,
}

pub const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// Reading every packet of a 200MB file without decoding takes seconds; this is generous.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(300);

async fn head_of(path: &Path) -> std::io::Result<(Vec<u8>, u64)> {
    let mut f = tokio::fs::File::open(path).await?;
    let size = f.metadata().await?.len();
    let mut head = vec![0u8; 64 * 1024];
    let mut n = 0;
    while n < head.len() {
        let m = f.read(&mut head[n..]).await?;
        if m == 0 {
            break;
        }
        n += m;
    }
    head.truncate(n);
    Ok((head, size))
}

fn tool_error(format: Format, e: ProcessError) -> Refusal {
    match e {
        ProcessError::Missing { .. } => Refusal::ToolMissing { detail: e.to_string() },
        ProcessError::Failed { stderr, .. } => Refusal::Damaged { format, detail: stderr },
        ProcessError::Timeout { .. } => Refusal::TimedOut { detail: e.to_string() },
        // Killed, could not start, a read error: the machine, not the file.
        other => Refusal::Unavailable { detail: other.to_string() },
    }
}

/// Read every packet and report what ffmpeg complained about: images and sound are decoded
/// (cheap, and the only way to see noise inside the data); a video's picture is only read
/// (decoding 200MB of it would cost minutes). For audio and video, also the length actually
/// read (ms) — shorter than the header says means cut short; `None` when nothing was.
async fn damage(tools: &Tools, format: Format, demuxer: Demuxer, path: &Path) -> Result<Option<u64>, Refusal> {
    let mut args: Vec<std::ffi::OsString> =
        ["-hide_banner", "-nostdin", "-v", "error", "-xerror"].iter().map(Into::into).collect();
    args.extend(demuxer.input_args(path));
    // Only what the conversion and LINE use: the picture and the first sound track. Others
    // (subtitles, timecode, cover art, a second language, an iPhone's spatial-audio track
    // that ffmpeg cannot decode) are never sent, so their state must not refuse the file.
    let maps: &[&str] = match format.category() {
        Category::Video => &["-map", "0:V:0?", "-map", "0:a:0?", "-c:v", "copy"],
        Category::Audio => &["-map", "0:a:0?"],
        Category::Image => &["-map", "0:v:0"],
    };
    args.extend(maps.iter().map(Into::into));
    args.extend(["-f", "null", "-", "-nostats", "-progress", "pipe:1"].iter().map(Into::into));
    let out = run_output(&tools.ffmpeg, args, CHECK_TIMEOUT, 1024 * 1024).await.map_err(|e| tool_error(format, e))?;
    if !out.stderr.is_empty() {
        return Err(Refusal::Damaged { format, detail: out.stderr });
    }
    // `-progress` ends with the position reached, in microseconds.
    let read_us = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("out_time_us="))
        .filter_map(|v| v.trim().parse::<i64>().ok())
        .next_back();
    Ok(read_us.filter(|us| *us > 0).map(|us| (us as u64).div_ceil(1000)))
}

/// Whether an MP3 says how long it is (a Xing/Info or VBRI header in its first frame). Without
/// one, ffprobe guesses the length from the first frames' bitrate — far off for variable
/// bitrates (a quiet start guesses minutes too long).
async fn mp3_states_its_length(path: &Path) -> std::io::Result<bool> {
    use tokio::io::AsyncSeekExt;
    let mut f = tokio::fs::File::open(path).await?;
    let mut id3 = [0u8; 10];
    let mut start = 0u64;
    if f.read_exact(&mut id3).await.is_ok() {
        start = input::id3_len(&id3).unwrap_or(0);
    }
    f.seek(std::io::SeekFrom::Start(start)).await?;
    // The header sits inside the first frame (at most 1,441 bytes at 320 kb/s, 32 kHz).
    let mut first = Vec::with_capacity(4096);
    (&mut f).take(4096).read_to_end(&mut first).await?;
    Ok(first.windows(4).any(|w| w == b"Xing" || w == b"Info" || w == b"VBRI"))
}

/// Images end with their format's trailer; a file cut short does not.
fn image_complete(format: Format, tail: &[u8]) -> bool {
    match format {
        // The trailer is the last byte (some writers pad with zeros after it).
        Format::Gif => tail.iter().rev().find(|b| **b != 0) == Some(&0x3B),
        Format::Png => tail.windows(8).rev().take(64).any(|w| w == b"IEND\xAEB`\x82"),
        _ => true,
    }
}

async fn tail_of(path: &Path, n: u64) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncSeekExt;
    let mut f = tokio::fs::File::open(path).await?;
    let len = f.metadata().await?.len();
    f.seek(std::io::SeekFrom::Start(len.saturating_sub(n))).await?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).await?;
    Ok(buf)
}

/// A JPEG's start-of-frame may lie past the head (photos with large EXIF, XMP or ICC
/// segments): walk the markers through the file, reading each segment's header only.
async fn jpeg_dimensions(path: &Path) -> std::io::Result<Option<(u32, u32)>> {
    use tokio::io::AsyncSeekExt;
    let mut f = tokio::fs::File::open(path).await?;
    let mut pos = 2u64;
    let mut h = [0u8; 9];
    // Real photos have a few dozen segments before the frame header; a file of fill bytes
    // or tiny segments is not walked to its end one read at a time.
    for _ in 0..1024 {
        f.seek(std::io::SeekFrom::Start(pos)).await?;
        let mut n = 0;
        while n < h.len() {
            match f.read(&mut h[n..]).await? {
                0 => break,
                m => n += m,
            }
        }
        if n < 4 || h[0] != 0xFF {
            return Ok(None);
        }
        if h[1] == 0xFF {
            pos += 1; // fill byte
            continue;
        }
        let marker = h[1];
        let len = u64::from(u16::from_be_bytes([h[2], h[3]]));
        let sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if sof {
            return Ok((n == 9)
                .then(|| (u32::from(u16::from_be_bytes([h[7], h[8]])), u32::from(u16::from_be_bytes([h[5], h[6]])))));
        }
        if marker == 0xD9 || marker == 0xDA || len < 2 {
            return Ok(None);
        }
        pos += 2 + len;
    }
    Ok(None)
}

/// What the intake decides for the file at `path`.
pub async fn inspect(tools: &Tools, path: &Path) -> Result<Inspection, Refusal> {
    let (head, size) =
        head_of(path).await.map_err(|e| Refusal::Unavailable { detail: format!("{}: {e}", path.display()) })?;
    if size == 0 {
        return Err(Refusal::Empty);
    }
    let mut format = sniff::sniff(&head).ok_or(Refusal::NotAllowed)?;
    if size > format.max_bytes() {
        return Err(Refusal::TooLarge { category: format.category(), max_bytes: format.max_bytes(), size });
    }
    let demuxer = input::demuxer_for(format, path).await.map_err(|e| Refusal::Unavailable { detail: e.to_string() })?;
    let mut found = Inspection {
        format,
        category: format.category(),
        mime: format.mime(),
        size,
        width: None,
        height: None,
        duration_ms: None,
        video_codec: None,
        audio_codec: None,
        conversion: Vec::new(),
        notes: Vec::new(),
        demuxer,
    };
    if format.category() == Category::Image {
        // The header's dimensions decide before anything decodes the pixels.
        let mut dims = sniff::image_dimensions(format, &head);
        if dims.is_none() && format == Format::Jpeg && size > head.len() as u64 {
            dims = jpeg_dimensions(path).await.map_err(|e| Refusal::Unavailable { detail: e.to_string() })?;
        }
        let (w, h) = dims.ok_or(Refusal::Damaged { format, detail: "no image header".into() })?;
        if sniff::too_many_pixels(w, h) {
            return Err(Refusal::TooManyPixels { width: w, height: h });
        }
        (found.width, found.height) = (Some(w), Some(h));
    }
    if format.category() == Category::Image {
        let tail = tail_of(path, 256).await.map_err(|e| Refusal::Unavailable { detail: e.to_string() })?;
        if !image_complete(format, &tail) {
            return Err(Refusal::Damaged { format, detail: "the image's trailer is missing".into() });
        }
    }
    let probed: Probe = probe(tools, path, demuxer, PROBE_TIMEOUT).await.map_err(|e| tool_error(format, e))?;
    let read_ms = damage(tools, format, demuxer, path).await?;
    // An MP3 that does not state its length has only a guess in its header: what was read is
    // the length (and what LINE is told), and there is nothing to compare it with.
    let guessed = format == Format::Mp3
        && !mp3_states_its_length(path).await.map_err(|e| Refusal::Unavailable { detail: e.to_string() })?;
    let declared = if guessed { None } else { probed.sent_duration_ms() };
    if let Some(declared) = declared {
        // The header promises more than the file holds: cut short. Nothing read at all is the
        // least of all (an MP4 whose tracks' data lies in another file, which is not opened).
        let read = read_ms.unwrap_or(0);
        if format.category() != Category::Image && read + 500 < declared && read * 20 < declared * 19 {
            return Err(Refusal::Damaged {
                format,
                detail: format!("the header says {declared} ms but only {read} ms could be read"),
            });
        }
    }
    // An MP4 with sound only is audio (M4A) — the probe, not the brand, says so.
    if format == Format::Mp4 && probed.video.is_none() && probed.audio.is_some() {
        format = Format::M4a;
        (found.format, found.category, found.mime) = (format, format.category(), format.mime());
    }
    found.duration_ms = if guessed { read_ms.or(probed.duration_ms) } else { probed.duration_ms };
    found.audio_codec = probed.audio.as_ref().map(|a| a.codec.clone());
    match format.category() {
        Category::Image => {
            found.conversion = match format {
                Format::Gif => {
                    found.notes.push(
                        "GIF 形式は LINE で送れないため、最初のコマだけの PNG 画像で送ります（アニメーションは動きません）。"
                            .into(),
                    );
                    vec![Step::GifToPng, Step::Preview]
                }
                _ => vec![Step::Preview],
            };
            found.duration_ms = None;
            found.audio_codec = None;
        }
        Category::Video => {
            let Some(v) = &probed.video else { return Err(Refusal::NoContent { format }) };
            (found.width, found.height, found.video_codec) = (Some(v.width), Some(v.height), Some(v.codec.clone()));
            let audio_ok = probed.audio.as_ref().is_none_or(|a| a.codec == "aac");
            let copyable = v.codec == "h264" && v.is_plain_420() && !v.is_hdr() && audio_ok;
            found.conversion = if copyable {
                vec![Step::RemuxToMp4, Step::Preview]
            } else {
                if v.is_hdr() {
                    found.notes.push(
                        "この動画は HDR（iPhone などの明るさの幅が広い撮影方式）です。LINE で見たときに色が白っぽくならないよう、通常の色合いの MP4 形式に作り直して送ります。"
                            .into(),
                    );
                } else {
                    // Plain words first; what is in the way, for whoever asks, in brackets.
                    let mut why = Vec::new();
                    if v.codec != "h264" {
                        why.push(format!("映像 {}", v.codec));
                    } else if !v.is_plain_420() {
                        why.push(format!("映像 {}", v.pix_fmt));
                    }
                    if let Some(a) = probed.audio.as_ref().filter(|a| a.codec != "aac") {
                        why.push(format!("音声 {}", a.codec));
                    }
                    found.notes.push(format!(
                        "この動画は、そのままでは多くのスマートフォンで再生できない形式（{}）のため、再生できる MP4 形式に作り直して送ります。",
                        why.join("、")
                    ));
                }
                vec![Step::TranscodeToMp4, Step::Preview]
            };
            if format == Format::Mov && found.conversion[0] == Step::RemuxToMp4 {
                // (A re-made video says MP4 already.)
                found.notes.push("MOV 形式は LINE で送れないため、MP4 形式で送ります（画質は変わりません）。".into());
            }
        }
        Category::Audio => {
            let Some(a) = &probed.audio else { return Err(Refusal::NoContent { format }) };
            if probed.duration_ms.is_none() {
                return Err(Refusal::Damaged { format, detail: "no duration".into() });
            }
            let as_is = matches!((format, a.codec.as_str()), (Format::Mp3, "mp3") | (Format::M4a, "aac"));
            if !as_is {
                found.conversion = vec![Step::ToM4a];
                found.notes.push(match format {
                    Format::Wav | Format::Aiff => {
                        format!("{} 形式は LINE で送れないため、M4A 形式で送ります。", format.name())
                    }
                    // An M4A or MP3 file whose sound is in another coding (ALAC, AAC behind ID3…).
                    _ => format!("この音声は LINE で送れない方式（{}）のため、M4A 形式で送ります。", a.codec),
                });
            }
        }
    }
    Ok(found)
}

/// Where an upload went: a file under the intake directory, now complete.
#[derive(Debug)]
pub struct Received {
    pub path: PathBuf,
    pub size: u64,
    pub format: Format,
}

/// Stream `body` into a new file in `dir`, deciding the format from the first bytes and
/// enforcing its size limit while streaming: a refused upload is deleted, never kept.
/// `max_bytes` caps every format (the manual's limits when `None`).
pub async fn receive<R: AsyncRead + Unpin>(
    dir: &Path,
    mut body: R,
    max_bytes: Option<u64>,
) -> Result<Received, ReceiveError> {
    tokio::fs::create_dir_all(dir).await.map_err(ReceiveError::Io)?;
    let token = crate::crypto::random_token(16);
    // Removed on every way out but success, including the request being dropped mid-body
    // (the client went away); a crash leaves it for the clean-up at start.
    let part = PartFile(Some(dir.join(format!("{token}.part"))));
    let (size, format) = stream_into(part.path(), &mut body, max_bytes).await?;
    let path = dir.join(format!("{token}.{UPLOAD_EXT}"));
    tokio::fs::rename(part.path(), &path).await.map_err(ReceiveError::Io)?;
    part.keep();
    Ok(Received { path, size, format })
}

/// A complete upload waiting for its conversion job; `.part` while it is still arriving.
pub const UPLOAD_EXT: &str = "upload";

struct PartFile(Option<PathBuf>);

impl PartFile {
    fn path(&self) -> &Path {
        self.0.as_deref().expect("set until kept")
    }

    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("{0}")]
    Refused(Refusal),
    #[error("storing the upload failed: {0}")]
    Io(std::io::Error),
}

async fn stream_into<R: AsyncRead + Unpin>(
    path: &Path,
    body: &mut R,
    cap: Option<u64>,
) -> Result<(u64, Format), ReceiveError> {
    let mut file =
        tokio::fs::OpenOptions::new().write(true).create_new(true).open(path).await.map_err(ReceiveError::Io)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut head: Vec<u8> = Vec::with_capacity(sniff::HEAD);
    let mut format: Option<Format> = None;
    let mut size: u64 = 0;
    loop {
        let n = body.read(&mut buf).await.map_err(ReceiveError::Io)?;
        if n == 0 {
            break;
        }
        if format.is_none() {
            head.extend_from_slice(&buf[..n.min(sniff::HEAD - head.len())]);
            if head.len() >= sniff::HEAD {
                format = Some(sniff::sniff(&head).ok_or(ReceiveError::Refused(Refusal::NotAllowed))?);
            }
        }
        size += n as u64;
        if let Some(f) = format {
            let max = cap.unwrap_or(u64::MAX).min(f.max_bytes());
            if size > max {
                return Err(ReceiveError::Refused(Refusal::TooLarge { category: f.category(), max_bytes: max, size }));
            }
        }
        file.write_all(&buf[..n]).await.map_err(ReceiveError::Io)?;
    }
    if size == 0 {
        return Err(ReceiveError::Refused(Refusal::Empty));
    }
    let format = match format {
        Some(f) => f,
        None => sniff::sniff(&head).ok_or(ReceiveError::Refused(Refusal::NotAllowed))?,
    };
    file.flush().await.map_err(ReceiveError::Io)?;
    file.sync_all().await.map_err(ReceiveError::Io)?;
    Ok((size, format))
}
