//! How ffmpeg and ffprobe are told to read a file: with the demuxer the first bytes decided and
//! nothing but that file. Left to guess, they skip an ID3 tag, find an HLS playlist or a concat
//! script behind it and read the files it names — another instructor's upload, say.

use std::ffi::OsString;
use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::sniff::{self, Format};

/// The ffmpeg demuxers for the manual's formats. None of them opens another file: no
/// playlists (`hls`), scripts (`concat`) or file patterns (`image2`) among them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Demuxer {
    Jpeg,
    Png,
    Gif,
    /// MP4, MOV and M4A.
    Mov,
    Mp3,
    /// AAC in ADTS behind an ID3 tag (the first bytes say MP3; some recorders write it so).
    Adts,
    Wav,
    Aiff,
}

impl Demuxer {
    /// ffmpeg's name for it (`-f`).
    pub fn name(self) -> &'static str {
        match self {
            Demuxer::Jpeg => "jpeg_pipe",
            Demuxer::Png => "png_pipe",
            Demuxer::Gif => "gif",
            Demuxer::Mov => "mov",
            Demuxer::Mp3 => "mp3",
            Demuxer::Adts => "aac",
            Demuxer::Wav => "wav",
            Demuxer::Aiff => "aiff",
        }
    }

    /// The `format_name` ffprobe reports for a file this demuxer read.
    pub fn format_name(self) -> &'static str {
        match self {
            Demuxer::Mov => "mov,mp4,m4a,3gp,3g2,mj2",
            other => other.name(),
        }
    }

    /// The demuxer for `format` when the file does not start with an ID3 tag.
    pub fn of(format: Format) -> Demuxer {
        match format {
            Format::Jpeg => Demuxer::Jpeg,
            Format::Png => Demuxer::Png,
            Format::Gif => Demuxer::Gif,
            Format::Mp4 | Format::Mov | Format::M4a => Demuxer::Mov,
            Format::Mp3 => Demuxer::Mp3,
            Format::Wav => Demuxer::Wav,
            Format::Aiff => Demuxer::Aiff,
        }
    }

    /// The arguments that open `path` as this demuxer's format and as nothing else: only the
    /// `file` protocol (no network, no `concat:`/`subfile:` inside a name), the path taken
    /// literally (`file:`, so a name with a colon is not read as a protocol), and for MP4/MOV
    /// external data references left off (`enable_drefs` is off by default; said here so that
    /// no later default or edit turns it on).
    pub fn input_args(self, path: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> =
            ["-protocol_whitelist", "file", "-f", self.name()].iter().map(Into::into).collect();
        if self == Demuxer::Mov {
            args.extend(["-enable_drefs", "0"].iter().map(Into::into));
        }
        let mut url = OsString::from("file:");
        url.push(path.as_os_str());
        args.extend([OsString::from("-i"), url]);
        args
    }
}

/// Whether the bytes after an ID3 tag (padding skipped) start AAC in ADTS rather than MPEG
/// audio: 12 sync bits, then layer 00 (MP3 says layer III, 01).
pub fn adts_behind_id3(after: &[u8]) -> bool {
    let start = after.iter().position(|b| *b != 0).unwrap_or(after.len());
    matches!(after.get(start..start + 2), Some([0xFF, b]) if b & 0xF6 == 0xF0)
}

/// The whole length of the ID3v2 tag `head` starts with (header, body and footer), if it does.
pub fn id3_len(head: &[u8]) -> Option<u64> {
    let h = head.get(..10)?;
    if &h[..3] != b"ID3" {
        return None;
    }
    let size = h[6..10].iter().fold(0u64, |n, b| (n << 7) | u64::from(b & 0x7F));
    let footer = if h[5] & 0x10 != 0 { 10 } else { 0 };
    Some(10 + size + footer)
}

/// The demuxer for the file at `path`, which the first bytes say is `format`: an ID3-tagged
/// file is read as what follows its tag (MPEG audio, or AAC in ADTS).
pub async fn demuxer_for(format: Format, path: &Path) -> std::io::Result<Demuxer> {
    if format != Format::Mp3 {
        return Ok(Demuxer::of(format));
    }
    let mut f = tokio::fs::File::open(path).await?;
    let mut head = [0u8; 10];
    let n = read_up_to(&mut f, &mut head).await?;
    let Some(len) = id3_len(&head[..n]) else { return Ok(Demuxer::Mp3) };
    f.seek(std::io::SeekFrom::Start(len)).await?;
    let mut after = [0u8; 256];
    let n = read_up_to(&mut f, &mut after).await?;
    Ok(if adts_behind_id3(&after[..n]) { Demuxer::Adts } else { Demuxer::Mp3 })
}

/// The demuxer for the file at `path` from its own first bytes; `None` when they are none of
/// the manual's formats.
pub async fn demuxer_of(path: &Path) -> std::io::Result<Option<Demuxer>> {
    let mut head = [0u8; sniff::HEAD];
    let n = read_up_to(&mut tokio::fs::File::open(path).await?, &mut head).await?;
    match sniff::sniff(&head[..n]) {
        Some(format) => demuxer_for(format, path).await.map(Some),
        None => Ok(None),
    }
}

async fn read_up_to(f: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).await? {
            0 => break,
            m => n += m,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_is_opened_as_one_file_with_its_demuxer() {
        let args = Demuxer::Mp3.input_args(Path::new("/data/media-intake/concat:x.upload"));
        assert_eq!(args, ["-protocol_whitelist", "file", "-f", "mp3", "-i", "file:/data/media-intake/concat:x.upload"]);
        let args = Demuxer::Mov.input_args(Path::new("clip.mp4"));
        assert_eq!(args, ["-protocol_whitelist", "file", "-f", "mov", "-enable_drefs", "0", "-i", "file:clip.mp4"]);
        for format in [
            Format::Jpeg,
            Format::Png,
            Format::Gif,
            Format::Mp4,
            Format::Mov,
            Format::Mp3,
            Format::Wav,
            Format::Aiff,
            Format::M4a,
        ] {
            let name = Demuxer::of(format).name();
            assert!(!["hls", "concat", "image2"].contains(&name), "{format:?}: {name}");
        }
    }

    #[test]
    fn what_follows_an_id3_tag_decides() {
        assert_eq!(id3_len(b"ID3\x04\0\0\0\0\x01\x7F"), Some(10 + 255));
        assert_eq!(id3_len(b"ID3\x04\0\x10\0\0\0\x0A"), Some(10 + 10 + 10), "with a footer");
        assert_eq!(id3_len(b"\xFF\xFB\x90\x64"), None);
        assert!(adts_behind_id3(&[0, 0, 0xFF, 0xF1, 0x50, 0x80]), "ADTS after padding");
        assert!(!adts_behind_id3(&[0xFF, 0xFB, 0x90, 0x64]), "an MP3 frame");
        assert!(!adts_behind_id3(b"#EXTM3U\n"), "a playlist is not AAC");
        assert!(!adts_behind_id3(b""));
    }
}
