//! What a file is, from its first bytes (never its name), and an image's dimensions from its
//! header (to refuse decompression bombs before anything decodes them).

use serde::Serialize;

/// The upload formats the course manual promises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jpeg,
    Png,
    Gif,
    Mp4,
    Mov,
    Mp3,
    Wav,
    Aiff,
    M4a,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Image,
    Video,
    Audio,
}

impl Category {
    pub fn label_ja(self) -> &'static str {
        match self {
            Category::Image => "画像",
            Category::Video => "動画",
            Category::Audio => "音声",
        }
    }

    /// What the manual allows for the category, as the instructor reads it.
    pub fn allowed_ja(self) -> &'static str {
        match self {
            Category::Image => ".jpg .jpeg .png .gif（10MB まで）",
            Category::Video => ".mp4 .mov（200MB まで）",
            Category::Audio => ".mp3 .wav .aif .aiff .m4a（200MB まで）",
        }
    }
}

pub const MB: u64 = 1024 * 1024;

impl Format {
    pub fn category(self) -> Category {
        match self {
            Format::Jpeg | Format::Png | Format::Gif => Category::Image,
            Format::Mp4 | Format::Mov => Category::Video,
            Format::Mp3 | Format::Wav | Format::Aiff | Format::M4a => Category::Audio,
        }
    }

    /// The manual's upload limit: images 10MB, video and audio 200MB.
    pub fn max_bytes(self) -> u64 {
        match self.category() {
            Category::Image => 10 * MB,
            Category::Video | Category::Audio => 200 * MB,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "JPEG",
            Format::Png => "PNG",
            Format::Gif => "GIF",
            Format::Mp4 => "MP4",
            Format::Mov => "MOV",
            Format::Mp3 => "MP3",
            Format::Wav => "WAV",
            Format::Aiff => "AIFF",
            Format::M4a => "M4A",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Gif => "image/gif",
            Format::Mp4 => "video/mp4",
            Format::Mov => "video/quicktime",
            Format::Mp3 => "audio/mpeg",
            Format::Wav => "audio/wav",
            Format::Aiff => "audio/aiff",
            Format::M4a => "audio/mp4",
        }
    }
}

/// How many leading bytes [`sniff`] wants (it decides with fewer when the file is shorter).
pub const HEAD: usize = 64;

/// The format of a file from its first bytes, or `None` for anything the manual does not allow.
pub fn sniff(head: &[u8]) -> Option<Format> {
    let at = |i: usize, magic: &[u8]| head.get(i..i + magic.len()) == Some(magic);
    if at(0, &[0xFF, 0xD8, 0xFF]) {
        return Some(Format::Jpeg);
    }
    if at(0, b"\x89PNG\r\n\x1a\n") {
        return Some(Format::Png);
    }
    if at(0, b"GIF87a") || at(0, b"GIF89a") {
        return Some(Format::Gif);
    }
    if at(0, b"RIFF") && at(8, b"WAVE") {
        return Some(Format::Wav);
    }
    if at(0, b"FORM") && (at(8, b"AIFF") || at(8, b"AIFC")) {
        return Some(Format::Aiff);
    }
    if at(4, b"ftyp") {
        let brand = head.get(8..12)?;
        return match brand {
            b"qt  " => Some(Format::Mov),
            b"M4A " | b"M4B " | b"M4P " => Some(Format::M4a),
            // Still images in the same box format (iPhone HEIC photos, AVIF, camera raw,
            // JPEG 2000) are not among the manual's formats: refused as such, not later as a
            // "damaged video".
            b"heic" | b"heix" | b"heim" | b"heis" | b"hevc" | b"hevx" | b"hevm" | b"hevs" | b"mif1" | b"msf1"
            | b"mif2" | b"avif" | b"avis" | b"avio" | b"crx " | b"jp2 " | b"jpx " | b"jpm " | b"jph " => None,
            // Every other brand (isom, mp41, mp42, avc1, M4V, 3gp…): the probe decides what is inside.
            _ => Some(Format::Mp4),
        };
    }
    // QuickTime files older than `ftyp` begin with another atom.
    if at(4, b"moov") || at(4, b"mdat") || at(4, b"wide") || at(4, b"free") || at(4, b"skip") {
        return Some(Format::Mov);
    }
    if at(0, b"ID3") {
        return Some(Format::Mp3);
    }
    // An MPEG audio frame: 11 sync bits, MPEG version not reserved, layer III.
    if head.len() >= 4 && head[0] == 0xFF && head[1] & 0xE0 == 0xE0 && head[1] & 0x18 != 0x08 && head[1] & 0x06 == 0x02
    {
        return Some(Format::Mp3);
    }
    None
}

/// Width and height from an image's header, without decoding it. `None` when the header is
/// cut short or malformed.
pub fn image_dimensions(format: Format, data: &[u8]) -> Option<(u32, u32)> {
    let be16 = |i: usize| data.get(i..i + 2).map(|b| u32::from(u16::from_be_bytes([b[0], b[1]])));
    let le16 = |i: usize| data.get(i..i + 2).map(|b| u32::from(u16::from_le_bytes([b[0], b[1]])));
    let be32 = |i: usize| data.get(i..i + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    match format {
        Format::Png => {
            if data.get(12..16) != Some(b"IHDR".as_slice()) {
                return None;
            }
            Some((be32(16)?, be32(20)?))
        }
        Format::Gif => Some((le16(6)?, le16(8)?)),
        Format::Jpeg => {
            // Walk the markers up to the first start-of-frame.
            let mut i = 2;
            loop {
                while data.get(i) == Some(&0xFF) && data.get(i + 1) == Some(&0xFF) {
                    i += 1;
                }
                if data.get(i) != Some(&0xFF) {
                    return None;
                }
                let marker = *data.get(i + 1)?;
                let len = be16(i + 2)? as usize;
                let sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
                if sof {
                    return Some((be16(i + 7)?, be16(i + 5)?));
                }
                if marker == 0xD9 || marker == 0xDA || len < 2 {
                    return None;
                }
                i += 2 + len;
            }
        }
        _ => None,
    }
}

/// The decompression-bomb rule: at most this many pixels per side, and in all.
pub const MAX_SIDE: u32 = 16_384;
pub const MAX_PIXELS: u64 = 50_000_000;

pub fn too_many_pixels(w: u32, h: u32) -> bool {
    w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE || u64::from(w) * u64::from(h) > MAX_PIXELS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_the_bytes() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0\0\x10JFIF"), Some(Format::Jpeg));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some(Format::Png));
        assert_eq!(sniff(b"GIF89a\x01\0\x01\0"), Some(Format::Gif));
        assert_eq!(sniff(b"RIFF\x24\0\0\0WAVEfmt "), Some(Format::Wav));
        assert_eq!(sniff(b"FORM\0\0\0\x24AIFFCOMM"), Some(Format::Aiff));
        assert_eq!(sniff(b"\0\0\0\x14ftypqt  \0\0\0\0qt  "), Some(Format::Mov));
        assert_eq!(sniff(b"\0\0\0\x20ftypisom\0\0\x02\0isomiso2avc1mp41"), Some(Format::Mp4));
        assert_eq!(sniff(b"\0\0\0\x20ftypM4A \0\0\0\0M4A mp42isom"), Some(Format::M4a));
        assert_eq!(sniff(b"ID3\x04\0\0\0\0\0\0"), Some(Format::Mp3));
        assert_eq!(sniff(&[0xFF, 0xFB, 0x90, 0x64]), Some(Format::Mp3), "MPEG-1 layer III frame");
        assert_eq!(sniff(&[0xFF, 0xF1, 0x50, 0x80]), None, "AAC in ADTS is not MP3");
        assert_eq!(sniff(b"%PDF-1.7"), None);
        assert_eq!(sniff(b"<html>"), None);
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"\0\0\0\x14ftyp"), None, "cut short");
        assert_eq!(sniff(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic"), None, "an iPhone photo (HEIC) is not a video");
        assert_eq!(sniff(b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf"), None, "AVIF");
        assert_eq!(sniff(b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom"), Some(Format::Mp4));
    }

    #[test]
    fn dimensions_from_headers() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend(100_000u32.to_be_bytes());
        png.extend(3u32.to_be_bytes());
        assert_eq!(image_dimensions(Format::Png, &png), Some((100_000, 3)));
        assert_eq!(image_dimensions(Format::Gif, b"GIF89a\x40\x01\xF0\x00"), Some((320, 240)));
        let jpeg =
            [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x01, 0xE0, 0x02, 0x80];
        assert_eq!(image_dimensions(Format::Jpeg, &jpeg), Some((640, 480)));
        assert_eq!(image_dimensions(Format::Jpeg, &jpeg[..10]), None);
        assert!(too_many_pixels(100_000, 3) && too_many_pixels(10_000, 10_000) && too_many_pixels(0, 5));
        assert!(!too_many_pixels(4032, 3024));
    }
}
