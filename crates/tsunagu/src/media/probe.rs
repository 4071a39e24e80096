//! ffprobe's view of a file: container, streams, codecs, dimensions and duration.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

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
}

#[derive(Debug, Clone)]
pub struct AudioStream {
    pub codec: String,
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

pub async fn probe(tools: &Tools, path: &Path, timeout: Duration) -> Result<Probe, ProcessError> {
    let mut args: Vec<std::ffi::OsString> =
        ["-v", "error", "-print_format", "json", "-show_format", "-show_streams"].iter().map(Into::into).collect();
    args.push(path.as_os_str().to_owned());
    let out = run(&tools.ffprobe, args, timeout, 4 * 1024 * 1024).await?;
    let raw: Raw = serde_json::from_slice(&out).map_err(|e| ProcessError::Failed {
        program: "ffprobe".into(),
        status: "unreadable output".into(),
        stderr: e.to_string(),
    })?;
    let mut p = Probe::default();
    let format = raw.format.unwrap_or(RawFormat { format_name: None, duration: None });
    p.format_name = format.format_name.unwrap_or_default();
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
                });
            }
            Some("audio") if p.audio.is_none() => {
                if p.duration_ms.is_none() {
                    p.duration_ms = s.duration.as_deref().and_then(ms);
                }
                p.audio = Some(AudioStream { codec: s.codec_name.unwrap_or_default() });
            }
            _ => {}
        }
    }
    Ok(p)
}
