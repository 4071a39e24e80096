//! ffprobe's view of a file: container, streams, codecs, dimensions and duration.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::input::Demuxer;
use super::process::{ProcessError, Tools, run};

#[derive(Debug, Clone, Default)]
pub struct Probe {
    pub format_name: String,
    pub duration_ms: Option<u64>,
    pub video: Option<VideoStream>,
    pub audio: Option<AudioStream>,
}

#[derive(Debug, Clone)]
pub struct VideoStream {
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// `yuv420p` is what every phone plays; 10-bit or 4:2:2/4:4:4 H.264 is not.
    pub pix_fmt: String,
    /// `smpte2084` (PQ) or `arib-std-b67` (HLG) for HDR, as iPhones record by default.
    pub color_transfer: String,
    /// Empty when untagged (the tone map then assumes BT.2020, as HDR is).
    pub color_primaries: String,
    pub color_space: String,
    /// This stream's own length, when the container says.
    pub duration_ms: Option<u64>,
}

impl Probe {
    /// How long the streams LINE gets (the picture and the first sound track) say they are;
    /// the container's length counts every track (a longer second language, late subtitles).
    /// When a sent stream does not say its length, the container's is used.
    pub fn sent_duration_ms(&self) -> Option<u64> {
        let sent: Vec<Option<u64>> =
            [self.video.as_ref().map(|v| v.duration_ms), self.audio.as_ref().map(|a| a.duration_ms)]
                .into_iter()
                .flatten()
                .collect();
        if !sent.is_empty() && sent.iter().all(Option::is_some) {
            sent.into_iter().flatten().max()
        } else {
            self.duration_ms
        }
    }
}

impl VideoStream {
    /// HDR pictures shown as SDR look pale and flat unless tone-mapped.
    pub fn is_hdr(&self) -> bool {
        matches!(self.color_transfer.as_str(), "smpte2084" | "arib-std-b67")
    }

    /// 8-bit 4:2:0, the H.264 every phone decodes.
    pub fn is_plain_420(&self) -> bool {
        matches!(self.pix_fmt.as_str(), "yuv420p" | "yuvj420p")
    }
}

#[derive(Debug, Clone)]
pub struct AudioStream {
    pub codec: String,
    pub duration_ms: Option<u64>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    streams: Vec<RawStream>,
    format: Option<RawFormat>,
}

#[derive(Deserialize)]
struct RawStream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    pix_fmt: Option<String>,
    color_transfer: Option<String>,
    color_primaries: Option<String>,
    color_space: Option<String>,
    duration: Option<String>,
    #[serde(default)]
    disposition: std::collections::HashMap<String, i64>,
}

#[derive(Deserialize)]
struct RawFormat {
    format_name: Option<String>,
    duration: Option<String>,
}

fn ms(seconds: &str) -> Option<u64> {
    let s: f64 = seconds.parse().ok()?;
    (s.is_finite() && s > 0.0).then(|| (s * 1000.0).round() as u64)
}

/// ffprobe's view of the file at `path`, read with `demuxer` (see [`Demuxer::input_args`]).
/// A file ffprobe reports as another container is refused as its verdict on the input.
pub async fn probe(tools: &Tools, path: &Path, demuxer: Demuxer, timeout: Duration) -> Result<Probe, ProcessError> {
    let mut args: Vec<std::ffi::OsString> =
        ["-v", "error", "-print_format", "json", "-show_format", "-show_streams"].iter().map(Into::into).collect();
    args.extend(demuxer.input_args(path));
    let out = run(&tools.ffprobe, args, timeout, 4 * 1024 * 1024).await?;
    let raw: Raw = serde_json::from_slice(&out).map_err(|e| ProcessError::Failed {
        program: "ffprobe".into(),
        status: "unreadable output".into(),
        stderr: e.to_string(),
    })?;
    let mut p = Probe::default();
    let format = raw.format.unwrap_or(RawFormat { format_name: None, duration: None });
    p.format_name = format.format_name.unwrap_or_default();
    if p.format_name != demuxer.format_name() {
        return Err(ProcessError::Failed {
            program: "ffprobe".into(),
            status: "unexpected container".into(),
            stderr: format!("read as {:?}, not {}", p.format_name, demuxer.format_name()),
        });
    }
    p.duration_ms = format.duration.as_deref().and_then(ms);
    for s in raw.streams {
        // Cover art in audio files is a "video" stream marked as an attached picture.
        let attached = s.disposition.get("attached_pic").copied().unwrap_or(0) == 1;
        match s.codec_type.as_deref() {
            Some("video") if !attached && p.video.is_none() => {
                p.video = Some(VideoStream {
                    codec: s.codec_name.unwrap_or_default(),
                    width: s.width.unwrap_or(0),
                    height: s.height.unwrap_or(0),
                    pix_fmt: s.pix_fmt.unwrap_or_default(),
                    color_transfer: s.color_transfer.unwrap_or_default(),
                    color_primaries: s.color_primaries.unwrap_or_default(),
                    color_space: s.color_space.unwrap_or_default(),
                    duration_ms: s.duration.as_deref().and_then(ms),
                });
            }
            Some("audio") if p.audio.is_none() => {
                if p.duration_ms.is_none() {
                    p.duration_ms = s.duration.as_deref().and_then(ms);
                }
                p.audio = Some(AudioStream {
                    codec: s.codec_name.unwrap_or_default(),
                    duration_ms: s.duration.as_deref().and_then(ms),
                });
            }
            _ => {}
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(d: Option<u64>) -> Option<VideoStream> {
        Some(VideoStream {
            codec: "h264".into(),
            width: 2,
            height: 2,
            pix_fmt: "yuv420p".into(),
            color_transfer: String::new(),
            color_primaries: String::new(),
            color_space: String::new(),
            duration_ms: d,
        })
    }

    #[test]
    fn the_sent_length_is_the_sent_tracks_or_else_the_containers() {
        let audio = |d| Some(AudioStream { codec: "aac".into(), duration_ms: d });
        let p = |v, a| Probe { format_name: String::new(), duration_ms: Some(20_000), video: v, audio: a };
        assert_eq!(p(video(Some(1000)), audio(Some(1500))).sent_duration_ms(), Some(1500), "a longer other track");
        assert_eq!(p(video(Some(2000)), audio(None)).sent_duration_ms(), Some(20_000), "one says nothing");
        assert_eq!(p(None, audio(Some(3000))).sent_duration_ms(), Some(3000));
        assert_eq!(p(None, None).sent_duration_ms(), Some(20_000));
    }
}
