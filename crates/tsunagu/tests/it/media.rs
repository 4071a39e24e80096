//! Media intake with real files made by ffmpeg (nothing large in the repository): every format
//! the manual allows is recognised from its content with what LINE needs done to it; every
//! refusal names its rule; an upload streamed past its limit leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::Command;

use tokio::io::AsyncRead;
use tsunagu::media::input::Demuxer;
use tsunagu::media::intake::{self, ReceiveError, Refusal, Step};
use tsunagu::media::process::Tools;
use tsunagu::media::sniff::{Category, Format, MB};
use tsunagu_store::testing::TempDir;

/// Make a fixture with ffmpeg (`ffmpeg -v error -y ARGS… OUT`).
pub fn make(dir: &Path, name: &str, args: &str) -> PathBuf {
    let out = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args.split_whitespace())
        .arg(&out)
        .status()
        .expect("ffmpeg is installed (scripts/test installs Debian's ffmpeg)");
    assert!(status.success(), "ffmpeg made {name}");
    out
}

fn cut(src: &Path, dst: &Path, keep: f64) -> PathBuf {
    let bytes = std::fs::read(src).unwrap();
    std::fs::write(dst, &bytes[..(bytes.len() as f64 * keep) as usize]).unwrap();
    dst.to_path_buf()
}

const VIDEO: &str = "-f lavfi -i testsrc=size=320x240:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100 -t 2";
const AUDIO: &str = "-f lavfi -i sine=frequency=440:sample_rate=44100 -t 2";

struct Fixtures {
    _dir: TempDir,
    jpg: PathBuf,
    png: PathBuf,
    gif: PathBuf,
    mp4: PathBuf,
    mov: PathBuf,
    mov_other_codecs: PathBuf,
    mov_subtitled: PathBuf,
    mov_two_languages: PathBuf,
    mov_hdr: PathBuf,
    mov_hdr_untagged: PathBuf,
    mp4_10bit: PathBuf,
    mp3: PathBuf,
    mp3_bad_cover: PathBuf,
    mp3_unstated_length: PathBuf,
    wav: PathBuf,
    aiff: PathBuf,
    m4a: PathBuf,
    mp4_audio_only: PathBuf,
}

fn fixtures() -> Fixtures {
    let dir = TempDir::new("tsunagu-media");
    let d = dir.path().to_path_buf();
    let srt = d.join("captions.srt");
    std::fs::write(&srt, "1\n00:00:00,000 --> 00:00:01,500\nこんにちは\n").unwrap();
    // Sound that is whole, with cover art that is not (LINE never sees the cover).
    let mp3 = make(&d, "talk.mp3", &format!("{AUDIO} -c:a libmp3lame"));
    let cover = make(&d, "cover.jpg", "-f lavfi -i testsrc=size=320x240:rate=1 -frames:v 1");
    let cover = cut(&cover, &d.join("cover-cut.jpg"), 0.5);
    let mp3_bad_cover = make(
        &d,
        "covered.mp3",
        &format!(
            "-i {} -i {} -map 0 -map 1 -c copy -id3v2_version 3 -disposition:v attached_pic",
            mp3.display(),
            cover.display()
        ),
    );
    Fixtures {
        jpg: make(&d, "photo.jpg", "-f lavfi -i testsrc=size=320x240:rate=1 -frames:v 1"),
        png: make(&d, "photo.png", "-f lavfi -i testsrc=size=320x240:rate=1 -frames:v 1"),
        gif: make(&d, "anim.gif", "-f lavfi -i testsrc=size=160x120:rate=5 -frames:v 5"),
        mp4: make(&d, "clip.mp4", &format!("{VIDEO} -c:v libx264 -pix_fmt yuv420p -c:a aac")),
        mov: make(&d, "clip.mov", &format!("{VIDEO} -c:v libx264 -pix_fmt yuv420p -c:a aac")),
        mov_other_codecs: make(&d, "old.mov", &format!("{VIDEO} -c:v mpeg4 -c:a pcm_s16be")),
        // As phones and editors write them: a subtitle track and a timecode track besides.
        mov_subtitled: make(
            &d,
            "captioned.mov",
            &format!(
                "{VIDEO} -i {} -map 0 -map 1 -map 2 -t 2 -c:v libx264 -pix_fmt yuv420p -c:a aac -c:s mov_text -timecode 01:00:00:00",
                srt.display()
            ),
        ),
        // A second sound track longer than the picture (the container's length is the longest).
        mov_two_languages: make(
            &d,
            "two-languages.mov",
            "-f lavfi -i testsrc=size=160x120:rate=25:duration=1 -f lavfi -i sine=duration=1 -f lavfi -i sine=frequency=220:duration=6 -map 0 -map 1 -map 2 -c:v libx264 -pix_fmt yuv420p -c:a aac",
        ),
        // As an iPhone records by default: HEVC, 10-bit, HLG (BT.2020).
        mov_hdr: make(
            &d,
            "iphone-hdr.mov",
            &format!(
                "{VIDEO} -c:v libx265 -x265-params log-level=error -pix_fmt yuv420p10le -color_primaries bt2020 -color_trc arib-std-b67 -colorspace bt2020nc -tag:v hvc1 -c:a aac"
            ),
        ),
        // HLG, but only the transfer is tagged (some editors write no primaries or matrix).
        mov_hdr_untagged: make(
            &d,
            "hlg-partly-tagged.mov",
            &format!(
                "{VIDEO} -c:v libx265 -x265-params log-level=error -pix_fmt yuv420p10le -color_trc arib-std-b67 -c:a aac"
            ),
        ),
        // H.264 "High 10": H.264, but not what phones decode.
        mp4_10bit: make(&d, "high10.mp4", &format!("{VIDEO} -c:v libx264 -pix_fmt yuv420p10le -c:a aac")),
        mp3,
        mp3_bad_cover,
        // Variable bitrate, no Xing header, a quiet start: ffprobe guesses about 18 s for 6 s.
        mp3_unstated_length: make(
            &d,
            "no-xing.mp3",
            "-f lavfi -i anoisesrc=duration=6:sample_rate=44100,volume=enable=lt(t\\,2):volume=0 -c:a libmp3lame -q:a 0 -write_xing 0",
        ),
        wav: make(&d, "talk.wav", AUDIO),
        aiff: make(&d, "talk.aiff", AUDIO),
        m4a: make(&d, "talk.m4a", &format!("{AUDIO} -c:a aac")),
        mp4_audio_only: make(&d, "voice.mp4", &format!("{AUDIO} -c:a aac")),
        _dir: dir,
    }
}

async fn inspect(p: &Path) -> Result<intake::Inspection, Refusal> {
    intake::inspect(&Tools::default(), p).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_allowed_format_is_recognised_with_what_line_needs() {
    let f = fixtures();
    let jpg = inspect(&f.jpg).await.unwrap();
    assert_eq!(
        (jpg.format, jpg.category, jpg.width, jpg.height),
        (Format::Jpeg, Category::Image, Some(320), Some(240))
    );
    assert_eq!(jpg.conversion, [Step::Preview]);
    assert_eq!(inspect(&f.png).await.unwrap().format, Format::Png);
    let gif = inspect(&f.gif).await.unwrap();
    assert_eq!(gif.conversion, [Step::GifToPng, Step::Preview]);
    assert!(gif.notes.iter().any(|n| n.contains("最初のコマだけ")), "the instructor is told: {:?}", gif.notes);

    let mp4 = inspect(&f.mp4).await.unwrap();
    assert_eq!(
        (mp4.format, mp4.video_codec.as_deref(), mp4.audio_codec.as_deref()),
        (Format::Mp4, Some("h264"), Some("aac"))
    );
    assert_eq!(mp4.duration_ms, Some(2000));
    assert_eq!(mp4.conversion, [Step::RemuxToMp4, Step::Preview], "faststart remux + preview");
    let mov = inspect(&f.mov).await.unwrap();
    assert_eq!((mov.format, mov.conversion.as_slice()), (Format::Mov, [Step::RemuxToMp4, Step::Preview].as_slice()));
    let old = inspect(&f.mov_other_codecs).await.unwrap();
    assert_eq!(old.conversion, [Step::TranscodeToMp4, Step::Preview], "mpeg4 video / PCM audio need H.264/AAC");
    assert_eq!(
        old.notes,
        [
            "この動画は、そのままでは多くのスマートフォンで再生できない形式（映像 mpeg4、音声 pcm_s16be）のため、再生できる MP4 形式に作り直して送ります。"
        ],
        "plain words, said once"
    );
    assert_eq!(mov.notes, ["MOV 形式は LINE で送れないため、MP4 形式で送ります（画質は変わりません）。"]);
    let hdr = inspect(&f.mov_hdr).await.unwrap();
    assert_eq!(hdr.conversion, [Step::TranscodeToMp4, Step::Preview]);
    assert!(hdr.notes.iter().any(|n| n.contains("HDR")), "the instructor is told: {:?}", hdr.notes);
    let high10 = inspect(&f.mp4_10bit).await.unwrap();
    assert_eq!(
        (high10.video_codec.as_deref(), high10.conversion.as_slice()),
        (Some("h264"), [Step::TranscodeToMp4, Step::Preview].as_slice()),
        "10-bit H.264 is re-encoded"
    );

    let mp3 = inspect(&f.mp3).await.unwrap();
    assert_eq!((mp3.format, mp3.conversion.is_empty()), (Format::Mp3, true), "MP3 goes as it is");
    assert!(mp3.duration_ms.is_some_and(|d| (1900..=2200).contains(&d)), "{:?}", mp3.duration_ms);
    for (p, format) in [(&f.wav, Format::Wav), (&f.aiff, Format::Aiff)] {
        let a = inspect(p).await.unwrap();
        assert_eq!((a.format, a.conversion.as_slice(), a.duration_ms), (format, [Step::ToM4a].as_slice(), Some(2000)));
    }
    let unstated = inspect(&f.mp3_unstated_length).await.unwrap();
    assert!(
        unstated.duration_ms.is_some_and(|d| (5900..=6200).contains(&d)),
        "the length read, not the header's guess (about 18 s): {:?}",
        unstated.duration_ms
    );
    let m4a = inspect(&f.m4a).await.unwrap();
    assert_eq!((m4a.format, m4a.conversion.is_empty(), m4a.duration_ms.is_some()), (Format::M4a, true, true));
    let voice = inspect(&f.mp4_audio_only).await.unwrap();
    assert_eq!((voice.format, voice.category), (Format::M4a, Category::Audio), "sound only: audio, whatever the brand");

    // The name does not matter, the content does.
    let renamed = f.png.with_file_name("really-a-png.jpg");
    std::fs::copy(&f.png, &renamed).unwrap();
    assert_eq!(inspect(&renamed).await.unwrap().format, Format::Png);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_their_rule() {
    let f = fixtures();
    let d = f.jpg.parent().unwrap().to_path_buf();
    let text = d.join("notes.jpg");
    std::fs::write(&text, "これは画像ではありません").unwrap();
    let r = inspect(&text).await.unwrap_err();
    assert_eq!(r, Refusal::NotAllowed);
    assert!(r.message_ja().contains("拡張子だけを変えたファイルは使えません"), "{}", r.message_ja());
    let empty = d.join("empty.mp4");
    std::fs::write(&empty, "").unwrap();
    assert_eq!(inspect(&empty).await.unwrap_err(), Refusal::Empty);

    // Cut short, in every format.
    for (src, keep) in [
        (&f.jpg, 0.4),
        (&f.png, 0.6),
        (&f.gif, 0.6),
        (&f.mp4, 0.9),
        (&f.mov, 0.5),
        (&f.mp3, 0.5),
        (&f.wav, 0.5),
        (&f.aiff, 0.5),
        (&f.m4a, 0.5),
    ] {
        let name = format!("cut-{}", src.file_name().unwrap().to_string_lossy());
        let p = cut(src, &d.join(&name), keep);
        match inspect(&p).await {
            Err(Refusal::Damaged { format, detail }) => {
                assert!(!detail.is_empty());
                let msg = Refusal::Damaged { format, detail }.message_ja();
                assert!(msg.contains("壊れているか、途中で切れています"), "{msg}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }

    // Corrupt, not cut: 2,000 bytes of noise a third of the way into the sound. Copying the
    // packets does not notice; decoding them does. (WAV/AIFF hold raw samples: noise is
    // still sound, so there is nothing to detect.)
    for src in [&f.mp3, &f.m4a] {
        let mut bytes = std::fs::read(src).unwrap();
        let at = bytes.len() / 3;
        let mut x: u32 = 0x9E37_79B9;
        for b in &mut bytes[at..at + 2000] {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        let name = format!("noisy-{}", src.file_name().unwrap().to_string_lossy());
        std::fs::write(d.join(&name), &bytes).unwrap();
        assert!(matches!(inspect(&d.join(&name)).await, Err(Refusal::Damaged { .. })), "{name}");
    }

    // A decompression bomb is refused from its header, before anything decodes it.
    let mut bomb = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bomb.extend(60_000u32.to_be_bytes());
    bomb.extend(60_000u32.to_be_bytes());
    bomb.extend([8, 0, 0, 0, 0, 0, 0, 0, 0]);
    let p = d.join("bomb.png");
    std::fs::write(&p, &bomb).unwrap();
    let r = inspect(&p).await.unwrap_err();
    assert_eq!(r, Refusal::TooManyPixels { width: 60_000, height: 60_000 });
    assert!(r.message_ja().contains("幅 60000 × 高さ 60000"), "{}", r.message_ja());

    // Over the manual's limit for its kind (an image over 10MB).
    let mut big = std::fs::read(&f.png).unwrap();
    big.resize(11 * MB as usize, 0);
    let p = d.join("big.png");
    std::fs::write(&p, &big).unwrap();
    let r = inspect(&p).await.unwrap_err();
    assert!(
        matches!(r, Refusal::TooLarge { category: Category::Image, max_bytes, .. } if max_bytes == 10 * MB),
        "{r:?}"
    );
    assert!(r.message_ja().starts_with("画像は 10MB までです"), "{}", r.message_ja());
}

/// A reader of `head` followed by zeros, `total` bytes in all (an upload in flight).
struct Upload {
    head: Vec<u8>,
    sent: u64,
    total: u64,
}

impl AsyncRead for Upload {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.total - self.sent).min(64 * 1024) as usize;
        let mut chunk = vec![0u8; n];
        for (i, b) in chunk.iter_mut().enumerate() {
            if let Some(h) = self.head.get(self.sent as usize + i) {
                *b = *h;
            }
        }
        buf.put_slice(&chunk);
        self.sent += n as u64;
        std::task::Poll::Ready(Ok(()))
    }
}

fn leftovers(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_stream_to_disk_and_refusals_leave_nothing() {
    let f = fixtures();
    let incoming = f.jpg.parent().unwrap().join("incoming");
    let mp4 = std::fs::read(&f.mp4).unwrap();

    // A whole file streams in and is what it was.
    let up = Upload { head: mp4.clone(), sent: 0, total: mp4.len() as u64 };
    let got = intake::receive(&incoming, up, None).await.unwrap();
    assert_eq!((got.format, got.size), (Format::Mp4, mp4.len() as u64));
    assert_eq!(std::fs::read(&got.path).unwrap(), mp4);
    std::fs::remove_file(&got.path).unwrap();

    // 201MB of video: refused once past 200MB, and nothing of it is kept.
    let up = Upload { head: mp4.clone(), sent: 0, total: 201 * MB };
    match intake::receive(&incoming, up, None).await {
        Err(ReceiveError::Refused(Refusal::TooLarge { category: Category::Video, max_bytes, .. })) => {
            assert_eq!(max_bytes, 200 * MB)
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(leftovers(&incoming), 0, "the partial upload was removed");

    // Content that is none of the allowed formats is refused from its first bytes.
    let up = Upload { head: b"%PDF-1.7\n".to_vec(), sent: 0, total: 5 * MB };
    assert!(matches!(intake::receive(&incoming, up, None).await, Err(ReceiveError::Refused(Refusal::NotAllowed))));
    assert_eq!(leftovers(&incoming), 0);
}

#[test]
fn media_inspect_prints_json() {
    let f = fixtures();
    let run = |p: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_tsunagu")).args(["media", "inspect"]).arg(p).output().unwrap();
        (out.status.code(), serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap())
    };
    let (code, v) = run(&f.wav);
    assert_eq!(code, Some(0));
    assert_eq!(v["format"], "wav");
    assert_eq!(v["duration_ms"], 2000);
    assert_eq!(v["conversion"], serde_json::json!(["to_m4a"]));
    let cut = cut(&f.mp3, &f.mp3.with_file_name("half.mp3"), 0.5);
    let (code, v) = run(&cut);
    assert_eq!(code, Some(1));
    assert_eq!(v["code"], "media.damaged");
    assert!(v["message"].as_str().unwrap().contains("途中で切れています"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_conversion_gives_what_line_accepts() {
    use tsunagu::media::convert::{PREVIEW_MAX, apply, check_for_line};
    let f = fixtures();
    let t = Tools::default();
    let d = f.jpg.parent().unwrap().to_path_buf();
    let out = |name: &str| d.join(name);

    // GIF → PNG (first frame), and a JPEG preview ≤ 1MB of every image.
    apply(&t, Step::GifToPng, &f.gif, &out("gif.png")).await.unwrap();
    let png = check_for_line(&t, Category::Image, &out("gif.png")).await.unwrap();
    assert_eq!((png.format, png.width, png.height), (Format::Png, Some(160), Some(120)));
    for src in [&f.jpg, &f.png, &out("gif.png")] {
        apply(&t, Step::Preview, src, &out("preview.jpg")).await.unwrap();
        let p = check_for_line(&t, Category::Image, &out("preview.jpg")).await.unwrap();
        assert_eq!(p.format, Format::Jpeg);
        assert!(p.size <= PREVIEW_MAX);
    }

    // MOV (H.264/AAC) → MP4 by remuxing, with faststart (the index before the media data).
    apply(&t, Step::RemuxToMp4, &f.mov, &out("mov.mp4")).await.unwrap();
    let mp4 = check_for_line(&t, Category::Video, &out("mov.mp4")).await.unwrap();
    assert_eq!((mp4.format, mp4.duration_ms), (Format::Mp4, Some(2000)));
    let bytes = std::fs::read(out("mov.mp4")).unwrap();
    let (moov, mdat) = (find(&bytes, b"moov"), find(&bytes, b"mdat"));
    assert!(moov < mdat, "faststart: moov at {moov}, mdat at {mdat}");
    // Other codecs → H.264/AAC.
    apply(&t, Step::TranscodeToMp4, &f.mov_other_codecs, &out("old.mp4")).await.unwrap();
    let v = check_for_line(&t, Category::Video, &out("old.mp4")).await.unwrap();
    assert_eq!((v.video_codec.as_deref(), v.audio_codec.as_deref()), (Some("h264"), Some("aac")));
    // HDR (HLG) → SDR: tone-mapped, tagged BT.709, 8-bit 4:2:0. Converted as it is, the HLG
    // tag would stay and phones would show the pictures pale.
    for (src, name) in
        [(&f.mov_hdr, "hdr.mp4"), (&f.mov_hdr_untagged, "hdr-untagged.mp4"), (&f.mp4_10bit, "high10-8bit.mp4")]
    {
        apply(&t, Step::TranscodeToMp4, src, &out(name)).await.unwrap();
        check_for_line(&t, Category::Video, &out(name)).await.unwrap();
        let p = tsunagu::media::probe::probe(&t, &out(name), Demuxer::Mov, intake::PROBE_TIMEOUT).await.unwrap();
        let v = p.video.unwrap();
        assert_eq!((v.codec.as_str(), v.pix_fmt.as_str()), ("h264", "yuv420p"), "{name}");
        assert!(!v.is_hdr(), "{name}: {}", v.color_transfer);
    }
    // An ffmpeg without zscale (built without libzimg): converted without the tone map rather
    // than not at all, and still tagged BT.709 so no player takes it for HDR.
    let no_zscale = d.join("ffmpeg-without-zscale");
    std::fs::write(
        &no_zscale,
        "#!/bin/sh\ncase \"$*\" in *zscale*) echo \"No such filter: 'zscale'\" >&2; exit 1;; esac\nexec ffmpeg \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&no_zscale, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let plain = Tools { ffmpeg: no_zscale, ffprobe: "ffprobe".into() };
    apply(&plain, Step::TranscodeToMp4, &f.mov_hdr, &out("hdr-plain.mp4")).await.unwrap();
    check_for_line(&t, Category::Video, &out("hdr-plain.mp4")).await.unwrap();
    for name in ["hdr.mp4", "hdr-untagged.mp4", "hdr-plain.mp4"] {
        let sdr = tsunagu::media::probe::probe(&t, &out(name), Demuxer::Mov, intake::PROBE_TIMEOUT).await.unwrap();
        assert_eq!(sdr.video.unwrap().color_transfer, "bt709", "{name}: SDR");
    }
    // A preview of a video.
    apply(&t, Step::Preview, &out("old.mp4"), &out("video-preview.jpg")).await.unwrap();
    assert!(check_for_line(&t, Category::Image, &out("video-preview.jpg")).await.unwrap().size <= PREVIEW_MAX);

    // WAV/AIFF → M4A (AAC) with its duration in ms.
    for src in [&f.wav, &f.aiff] {
        apply(&t, Step::ToM4a, src, &out("a.m4a")).await.unwrap();
        let a = check_for_line(&t, Category::Audio, &out("a.m4a")).await.unwrap();
        assert_eq!((a.format, a.audio_codec.as_deref()), (Format::M4a, Some("aac")));
        assert!(a.duration_ms.is_some_and(|d| (1950..=2100).contains(&d)), "{:?}", a.duration_ms);
    }
    // And what LINE would refuse is caught by the check.
    use tsunagu::media::convert::CheckError;
    assert!(matches!(check_for_line(&t, Category::Audio, &f.wav).await, Err(CheckError::Unfit { .. })), "WAV");
    assert!(matches!(check_for_line(&t, Category::Video, &f.mov).await, Err(CheckError::Unfit { .. })), "MOV");
    // A check that could not run says so (the job retries it) rather than calling the file unfit.
    let gone = Tools { ffmpeg: d.join("no-ffmpeg"), ffprobe: d.join("no-ffprobe") };
    match check_for_line(&gone, Category::Video, &out("mov.mp4")).await {
        Err(CheckError::Passing(Refusal::ToolMissing { .. })) => {}
        other => panic!("{other:?}"),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap_or(usize::MAX)
}

/// moto's S3 server (PyPI `moto[server]`, installed by scripts/test into the test Python).
struct Moto {
    child: tokio::process::Child,
    base: String,
}

impl Moto {
    async fn start() -> Option<Moto> {
        let python = crate::helpers::test_python("the S3 half")?;
        let port = crate::helpers::free_port();
        let child = tokio::process::Command::new(python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start moto's S3 server");
        let base = format!("http://127.0.0.1:{port}");
        let http = crate::helpers::http().build().unwrap();
        let up = base.clone();
        crate::helpers::eventually(30, "moto answers", || {
            let (http, up) = (http.clone(), up.clone());
            async move { http.get(format!("{up}/moto-api/")).send().await.is_ok() }
        })
        .await;
        Some(Moto { child, base })
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Store a real MP4 and fetch it whole, in ranges and by HEAD, as LINE and players do.
async fn served_with_ranges(t: &crate::helpers::TestApp, file: &Path) -> String {
    let name = tsunagu::media::store::new_name("mp4");
    let bytes = std::fs::read(file).unwrap();
    let n = bytes.len() as u64;
    assert_eq!(t.app.media_store.put_file(&name, file).await.unwrap(), n);
    let url = tsunagu::media::store::url(&t.app.config, &name);
    assert!(url.ends_with(&format!("/media/{name}")));
    let http = crate::helpers::http().build().unwrap();
    let at = format!("{}/media/{name}", t.addr);

    let full = http.get(&at).send().await.unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers()["content-type"], "video/mp4");
    assert_eq!(full.headers()["content-length"], n.to_string().as_str());
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    assert_eq!(
        full.headers()["content-security-policy"],
        tsunagu::media::store::MEDIA_CSP,
        "the browser's own viewer may style itself; nothing runs"
    );
    // Cacheable as it is: no cookie set on an answer meant for LINE's servers and CDNs.
    assert!(full.headers().get("set-cookie").is_none(), "{:?}", full.headers());
    assert_eq!(full.bytes().await.unwrap(), bytes);

    let part = http.get(&at).header("range", "bytes=100-1123").send().await.unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], format!("bytes 100-1123/{n}").as_str());
    assert_eq!(part.headers()["content-length"], "1024");
    assert_eq!(part.bytes().await.unwrap(), bytes[100..1124]);
    let tail = http.get(&at).header("range", "bytes=-10").send().await.unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.unwrap(), bytes[bytes.len() - 10..]);
    let open = http.get(&at).header("range", format!("bytes={}-", n - 5)).send().await.unwrap();
    assert_eq!(open.bytes().await.unwrap(), bytes[bytes.len() - 5..]);
    let huge = http.get(&at).header("range", "bytes=0-18446744073709551615").send().await.unwrap();
    assert_eq!(huge.status(), 206, "an end past the file (even u64::MAX) means up to its end");
    assert_eq!(huge.headers()["content-range"], format!("bytes 0-{}/{n}", n - 1).as_str());
    assert_eq!(huge.bytes().await.unwrap(), bytes);
    let backwards = http.get(&at).header("range", "bytes=50-10").send().await.unwrap();
    assert_eq!(backwards.status(), 200, "an invalid range is ignored, not refused");
    assert_eq!(backwards.bytes().await.unwrap().len() as u64, n);
    let beyond = http.get(&at).header("range", format!("bytes={n}-")).send().await.unwrap();
    assert_eq!(beyond.status(), 416);
    assert_eq!(beyond.headers()["content-range"], format!("bytes */{n}").as_str());

    let head = http.head(&at).send().await.unwrap();
    assert_eq!(
        (head.status().as_u16(), head.headers()["content-length"].to_str().unwrap()),
        (200, n.to_string().as_str())
    );
    assert!(head.bytes().await.unwrap().is_empty());

    // Names are unguessable and checked: anything else is simply not there.
    let other = tsunagu::media::store::new_name("mp4");
    assert_eq!(http.get(format!("{}/media/{other}", t.addr)).send().await.unwrap().status(), 404);
    assert_eq!(http.get(format!("{}/media/..%2Fmaster.key", t.addr)).send().await.unwrap().status(), 404);
    assert_eq!(http.get(format!("{}/media/short.mp4", t.addr)).send().await.unwrap().status(), 404);
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_is_served_with_ranges_from_local_disk_and_s3() {
    let f = fixtures();
    // Local disk (the default: <data.dir>/media).
    let t = crate::helpers::TestApp::spawn().await;
    let name = served_with_ranges(&t, &f.mp4).await;
    assert!(t.app.config.data.dir.join("media").join(&name).exists(), "stored on the local disk");

    // An S3-compatible server, path-style (as MinIO-like servers want).
    let Some(moto) = Moto::start().await else { return };
    let http = crate::helpers::http().build().unwrap();
    assert!(http.put(format!("{}/tsunagu-media", moto.base)).send().await.unwrap().status().is_success(), "bucket");
    let s3_config = |endpoint: String, database: Option<String>| {
        move |c: &mut tsunagu::config::Config| {
            c.media.storage = "s3".into();
            c.media.s3_bucket = "tsunagu-media".into();
            c.media.s3_endpoint = endpoint;
            c.media.s3_region = "us-east-1".into();
            c.media.s3_access_key_id = "test".into();
            c.media.s3_secret_access_key = tsunagu::config::Secret::new("test");
            c.media.s3_path_style = true;
            if let Some(url) = database {
                c.database.url = url;
            }
        }
    };
    let s3 = crate::helpers::TestApp::spawn_with(s3_config(moto.base.clone(), None)).await;
    let name = served_with_ranges(&s3, &f.mp4).await;
    let listing =
        http.get(format!("{}/tsunagu-media?list-type=2", moto.base)).send().await.unwrap().text().await.unwrap();
    assert!(listing.contains(&name), "the object is in the bucket: {listing}");
    assert!(!s3.app.config.data.dir.join("media").join(&name).exists(), "and not on the local disk");

    // Two instances sharing the database and the bucket (different machines, different
    // disks): one receives the upload, the other's worker converts it.
    let other =
        crate::helpers::TestApp::spawn_with(s3_config(moto.base.clone(), Some(s3.app.config.database.url.clone())))
            .await;
    let c = s3.signup("teacher@example.com", "講師").await;
    drop(c);
    let me = {
        let mut conn = s3.app.store.read().await.unwrap();
        let e = tsunagu_core::Email::parse("teacher@example.com").unwrap();
        tsunagu_store::accounts::credentials_by_email(&mut conn, &e).await.unwrap().unwrap().account.id
    };
    let id = tsunagu::media::library::accept(&s3.app, me, "講義.mov", tokio::fs::File::open(&f.mov).await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        leftovers(&s3.app.config.data.dir.join("media-intake")),
        0,
        "the upload is in the bucket, not on this disk"
    );
    other.run_jobs().await; // only the other instance's worker runs
    let m = {
        let mut conn = s3.app.store.read().await.unwrap();
        tsunagu_store::media::get(&mut conn, me, id).await.unwrap().unwrap()
    };
    assert_eq!(m.status, tsunagu_store::media::MediaStatus::Ready, "{}", m.reason);
    let got = http.get(format!("{}/media/{}", s3.addr, m.file_name)).send().await.unwrap();
    assert_eq!((got.status().as_u16(), got.headers()["content-type"].to_str().unwrap()), (200, "video/mp4"));
    let listing =
        http.get(format!("{}/tsunagu-media?list-type=2", moto.base)).send().await.unwrap().text().await.unwrap();
    assert!(!listing.contains("intake/"), "the converted upload is removed from the bucket: {listing}");
    // An upload whose clean-up never ran (the process stopped first) is swept; one still
    // waiting for its conversion is not.
    s3.app.media_store.put_file("intake/lost.upload", &f.jpg).await.unwrap();
    let waiting =
        tsunagu::media::library::accept(&s3.app, me, "写真.jpg", tokio::fs::File::open(&f.jpg).await.unwrap())
            .await
            .unwrap();
    let swept = tsunagu::media::library::clean_intake(&s3.app, std::time::Duration::ZERO).await.unwrap();
    let listing =
        http.get(format!("{}/tsunagu-media?list-type=2", moto.base)).send().await.unwrap().text().await.unwrap();
    assert_eq!(swept, 1, "{listing}");
    assert!(!listing.contains("intake/lost.upload") && listing.contains("intake/"), "{listing}");
    other.run_jobs().await;
    let mut conn = s3.app.store.read().await.unwrap();
    let w = tsunagu_store::media::get(&mut conn, me, waiting).await.unwrap().unwrap();
    assert_eq!(w.status, tsunagu_store::media::MediaStatus::Ready, "{}", w.reason);
    drop(conn);
    // Deleted by the instructor: the video and its preview leave the bucket.
    assert!(listing.contains(&m.file_name) && listing.contains(&m.preview_name), "{listing}");
    let deleted = tsunagu::media::library::delete(&s3.app, me, id).await.unwrap();
    assert!(matches!(deleted, tsunagu_store::media::Deleted::Removed(_)), "{deleted:?}");
    other.run_jobs().await;
    let listing =
        http.get(format!("{}/tsunagu-media?list-type=2", moto.base)).send().await.unwrap().text().await.unwrap();
    assert!(
        !listing.contains(&m.file_name) && !listing.contains(&m.preview_name) && listing.contains(&w.file_name),
        "{listing}"
    );
    assert_eq!(http.get(format!("{}/media/{}", s3.addr, m.file_name)).send().await.unwrap().status(), 404);

    // The S3 server gone: 503 (try again), not a 404 that would look like the file never existed.
    drop(moto);
    let at = format!("{}/media/{name}", s3.addr);
    crate::helpers::eventually(30, "503 while S3 is down", || {
        let (http, at) = (http.clone(), at.clone());
        async move { http.get(&at).send().await.is_ok_and(|r| r.status() == 503) }
    })
    .await;
}

/// `tsunagu serve` on SQLite in `dir`, with nothing from the environment but PATH.
fn serve(dir: &TempDir, public_url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tsunagu"));
    c.arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TSUNAGU_DATA__DIR", dir.path())
        .env("TSUNAGU_DATABASE__URL", format!("sqlite://{}/t.db", dir.path().display()))
        .env("TSUNAGU_HTTP__LISTEN", "127.0.0.1:0")
        .env("TSUNAGU_HTTP__PUBLIC_URL", public_url);
    c
}

/// In production LINE must be able to fetch media: `serve` refuses a non-HTTPS public URL.
#[test]
fn serve_refuses_a_public_url_that_is_not_https() {
    let dir = TempDir::new("tsunagu-https");
    let out = serve(&dir, "http://courses.example.com").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("http.public_url が HTTPS ではありません（http://courses.example.com）"), "{err}");
    assert!(!dir.path().join("t.db").exists(), "refused before anything was created");
}

/// `serve` says at start, in Japanese, that ffmpeg is missing and what is then unavailable,
/// naming the program it looked for (the configured one), and that plain http is allowed only
/// because `media.allow_http` says so.
#[test]
fn serve_says_at_start_what_is_missing_for_media() {
    use std::io::{BufRead, BufReader};
    let dir = TempDir::new("tsunagu-noffmpeg");
    let mut child = serve(&dir, "http://127.0.0.1")
        .env("TSUNAGU_MEDIA__ALLOW_HTTP", "true")
        .env("TSUNAGU_MEDIA__FFMPEG", "/opt/nowhere/ffmpeg")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    // Read until the server says it listens (or gives up); the child is killed either way.
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("listening") || seen.len() > 100_000 {
                break;
            }
        }
        seen
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !reader.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let seen = reader.join().unwrap();
    assert!(seen.contains("ffmpeg が見つかりません"), "{seen}");
    assert!(seen.contains("/opt/nowhere/ffmpeg"), "names the configured program: {seen}");
    assert!(seen.contains("画像・動画・音声は確認も変換もできないため、アップロードを受け付けません"), "{seen}");
    assert!(seen.contains("media.allow_http = true のため"), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_become_ready_or_failed_through_the_conversion_job() {
    use tsunagu::media::library::{UploadError, accept};
    use tsunagu_store::media::{self as media_store, MediaStatus};
    let f = fixtures();
    let t = crate::helpers::TestApp::spawn().await;
    t.signup("teacher@example.com", "講師").await;
    t.signup("other@example.com", "別の講師").await;
    let account_of = |email: &'static str| {
        let app = t.app.clone();
        async move {
            let mut c = app.store.read().await.unwrap();
            let e = tsunagu_core::Email::parse(email).unwrap();
            tsunagu_store::accounts::credentials_by_email(&mut c, &e).await.unwrap().unwrap().account.id
        }
    };
    let (me, other) = (account_of("teacher@example.com").await, account_of("other@example.com").await);

    let cases = [
        (&f.gif, "アニメ.gif", "image/png", true),
        (&f.jpg, "写真.jpg", "image/jpeg", true),
        (&f.mov, "講義.mov", "video/mp4", true),
        (&f.mov_other_codecs, "古い講義.mov", "video/mp4", true),
        (&f.mov_subtitled, "字幕つき.mov", "video/mp4", true),
        (&f.mov_two_languages, "二か国語.mov", "video/mp4", true),
        (&f.mov_hdr, "iPhone で撮影.mov", "video/mp4", true),
        (&f.wav, "音声.wav", "audio/mp4", false),
        (&f.mp3, "音声.mp3", "audio/mpeg", false),
        (&f.mp3_bad_cover, "表紙つき.mp3", "audio/mpeg", false),
        (&f.png, "図.png", "image/png", true),
        (&f.mp4, "講義.mp4", "video/mp4", true),
        (&f.aiff, "音声.aiff", "audio/mp4", false),
        (&f.m4a, "音声.m4a", "audio/mp4", false),
        // Sound only in an MP4 (phones record voice memos so): audio, not video.
        (&f.mp4_audio_only, "ボイスメモ.m4a", "audio/mp4", false),
    ];
    let mut ids = Vec::new();
    for (path, name, _, _) in &cases {
        let file = tokio::fs::File::open(path).await.unwrap();
        ids.push(accept(&t.app, me, name, file).await.unwrap());
    }
    let damaged = cut(&f.mp3, &f.mp3.with_file_name("cut.mp3"), 0.5);
    let damaged_id = accept(&t.app, me, "途中まで.mp3", tokio::fs::File::open(&damaged).await.unwrap()).await.unwrap();
    {
        let mut c = t.app.store.read().await.unwrap();
        let m = media_store::get(&mut c, me, ids[0]).await.unwrap().unwrap();
        assert_eq!((m.status, m.status.label_ja()), (MediaStatus::Processing, "処理中"), "until the job runs");
    }
    t.run_jobs().await;

    let http = crate::helpers::http().build().unwrap();
    let mut c = t.app.store.read().await.unwrap();
    for ((_, name, mime, preview), id) in cases.iter().zip(&ids) {
        let m = media_store::get(&mut c, me, *id).await.unwrap().unwrap();
        assert_eq!(m.status, MediaStatus::Ready, "{name}: {}", m.reason);
        let got = http.get(format!("{}/media/{}", t.addr, m.file_name)).send().await.unwrap();
        assert_eq!((got.status().as_u16(), got.headers()["content-type"].to_str().unwrap()), (200, *mime), "{name}");
        if *preview {
            let p = http.get(format!("{}/media/{}", t.addr, m.preview_name)).send().await.unwrap();
            assert_eq!(p.headers()["content-type"], "image/jpeg");
            assert!(p.bytes().await.unwrap().len() as u64 <= tsunagu::media::convert::PREVIEW_MAX);
        } else {
            assert!(m.duration_ms.is_some_and(|d| d > 1900), "{name}: audio carries its duration");
        }
        assert!(media_store::get(&mut c, other, *id).await.unwrap().is_none(), "only its owner sees it");
        let ext = match *mime {
            "image/png" => ".png",
            "image/jpeg" => ".jpg",
            "video/mp4" => ".mp4",
            "audio/mp4" => ".m4a",
            _ => ".mp3",
        };
        assert!(m.file_name.ends_with(ext), "{name}: {}", m.file_name);
        let category = if mime.starts_with("audio/") {
            "audio"
        } else if *preview && mime.starts_with("video/") {
            "video"
        } else {
            "image"
        };
        assert_eq!(m.category, category, "{name}");
        assert_eq!(m.preview_name.is_empty(), !*preview, "{name}: a preview for images and video only");
    }
    let gif = media_store::get(&mut c, me, ids[0]).await.unwrap().unwrap();
    assert!(gif.notes.iter().any(|n| n.contains("最初のコマだけ")), "{:?}", gif.notes);
    let failed = media_store::get(&mut c, me, damaged_id).await.unwrap().unwrap();
    assert_eq!((failed.status, failed.status.label_ja()), (MediaStatus::Failed, "失敗"));
    assert!(failed.reason.contains("途中で切れています"), "{}", failed.reason);
    // Nothing of the uploads is left in the intake once handled.
    let intake = t.app.config.data.dir.join("media-intake");
    assert_eq!(leftovers(&intake), 0, "{:?}", std::fs::read_dir(&intake).unwrap().collect::<Vec<_>>());

    // Over the limit: refused while streaming, no record, nothing kept.
    let before = media_store::list(&mut c, me).await.unwrap().len();
    let mp4 = std::fs::read(&f.mp4).unwrap();
    match accept(&t.app, me, "大きすぎる.mp4", Upload { head: mp4, sent: 0, total: 201 * MB }).await {
        Err(UploadError::Refused(Refusal::TooLarge { .. })) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(media_store::list(&mut c, me).await.unwrap().len(), before);
    assert_eq!(leftovers(&intake), 0);

    // A conversion job already queued under the next file's key: the upload is refused as a
    // whole (nothing recorded, nothing kept) rather than recorded with no job of its own.
    let next = ids.iter().chain([&damaged_id]).max().unwrap() + 1;
    let mut w = t.app.store.conn().await.unwrap();
    sqlx::query(
        "INSERT INTO jobs (kind, payload, dedupe_key, state, attempts, max_attempts, run_at, created_at, updated_at)
         VALUES ('media.convert', '{}', $1, 'queued', 0, 1, 9000000000000, 0, 0)",
    )
    .bind(format!("media:{next}"))
    .execute(&mut *w)
    .await
    .unwrap();
    drop(w);
    let file = tokio::fs::File::open(&f.png).await.unwrap();
    match accept(&t.app, me, "図2.png", file).await {
        Err(UploadError::Other(e)) if e.to_string().contains("exists already") => {}
        other => panic!("refused for the queued job, not for another reason: {other:?}"),
    }
    assert_eq!(media_store::list(&mut c, me).await.unwrap().len(), before);
    assert_eq!(leftovers(&intake), 0);
    let mut w = t.app.store.conn().await.unwrap();
    sqlx::query("DELETE FROM jobs WHERE dedupe_key = $1").bind(format!("media:{next}")).execute(&mut *w).await.unwrap();
    drop(w);
    t.assert_no_jobs_left().await;
}

/// The console page: the plan check, uploads over HTTP (streamed, any size up to the rule),
/// refusals with their reason, and each file's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_page_takes_uploads_and_shows_their_state() {
    let f = fixtures();
    let t = crate::helpers::TestApp::spawn().await;
    let c = t.signup("teacher@example.com", "講師").await;
    let page = c.get("/courses/media").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("動画:.mp4, .mov、200MB 以内"), "the manual's formats, verbatim");
    let data_csrf = |html: &str| {
        let m = "data-csrf=\"";
        let s = html.find(m).map(|i| i + m.len());
        s.map(|s| html[s..s + html[s..].find('"').unwrap()].to_string())
    };
    // The free plan has no LINE step delivery: no form, and the upload route says why.
    assert!(data_csrf(&page.text).is_none());
    let token = crate::helpers::csrf(&page.text);
    let r = c.put_upload("/courses/media/upload", &token, "音声.mp3", std::fs::read(&f.mp3).unwrap()).await;
    assert_eq!(r.status, 403);
    assert!(r.text.contains("ビジネスプラン"), "{}", r.text);

    {
        let mut conn = t.app.store.conn().await.unwrap();
        let e = tsunagu_core::Email::parse("teacher@example.com").unwrap();
        let id = tsunagu_store::accounts::credentials_by_email(&mut conn, &e).await.unwrap().unwrap().account.id;
        tsunagu_store::accounts::set_plan(&mut conn, id, tsunagu_core::Plan::Business, 1).await.unwrap();
    }
    let page = c.get("/courses/media").await;
    let token = data_csrf(&page.text).expect("the upload form");
    let r = c.put_upload("/courses/media/upload", "wrong", "音声.mp3", std::fs::read(&f.mp3).unwrap()).await;
    assert_eq!(r.status, 403, "CSRF is checked");
    let r = c.put_upload("/courses/media/upload", &token, "講義 第1回.mov", std::fs::read(&f.mov).unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v: serde_json::Value = serde_json::from_str(&r.text).unwrap();
    assert_eq!(v["ok"], true);
    assert!(v["message"].as_str().unwrap().contains("「講義 第1回.mov」を受け付けました"));
    // 11MB of "PNG": past the request-size default of the console (2MB) and refused by the
    // image rule (10MB), while streaming.
    let mut big = std::fs::read(&f.png).unwrap();
    big.resize(11 * MB as usize, 0);
    let r = c.put_upload("/courses/media/upload", &token, "大きな画像.png", big).await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert!(r.text.contains("画像は 10MB までです"), "{}", r.text);
    let r = c.put_upload("/courses/media/upload", &token, "メモ.jpg", "画像ではありません".into()).await;
    assert_eq!(r.status, 422);
    assert!(r.text.contains("「メモ.jpg」は受け付けられませんでした"), "{}", r.text);

    let page = c.get("/courses/media").await.text;
    assert!(page.contains("講義 第1回.mov") && page.contains("処理中") && page.contains("data-processing"), "{page}");
    t.run_jobs().await;
    let page = c.get("/courses/media").await.text;
    assert!(page.contains("status-ready\">完了") && !page.contains("data-processing"), "{page}");
    assert!(page.contains("MOV 形式は LINE で送れないため、MP4 形式で送ります（画質は変わりません）。"), "{page}");
    assert!(page.contains("0分02秒"), "its length");
    assert!(page.contains(&format!("{}/media/", t.app.config.http.public_url)), "links to the served file");
    let js = c.get("/assets/media.js").await;
    assert_eq!(js.headers["content-type"], "text/javascript; charset=utf-8");

    // Deleting: the row's ［削除］ (a form with the CSRF token, asking first through the script).
    let id_of = |html: &str, name: &str| {
        let at = html.find(&format!("data-name=\"{name}\"")).unwrap_or_else(|| panic!("{name} listed: {html}"));
        let m = "data-id=\"";
        let s = html[..at].rfind(m).unwrap() + m.len();
        html[s..s + html[s..].find('"').unwrap()].to_string()
    };
    let mov_id = id_of(&page, "講義 第1回.mov");
    assert!(
        page.contains(&format!("action=\"/courses/media/{mov_id}/delete\""))
            && page.contains("data-confirm=\"「講義 第1回.mov」を削除しますか？")
    );
    let served = {
        let m = format!("{}/media/", t.app.config.http.public_url);
        let s = page.find(&m).unwrap() + m.len();
        page[s..s + page[s..].find('"').unwrap()].to_string()
    };
    let stored = t.app.config.data.dir.join("media");
    let fetch = |name: String| {
        let url = format!("{}/media/{name}", t.addr);
        async move { crate::helpers::http().build().unwrap().get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(fetch(served.clone()).await, 200);
    let r = c.post_form(&format!("/courses/media/{mov_id}/delete"), &[("csrf_token", "wrong")]).await;
    assert_eq!(r.status, 403, "CSRF is checked");
    // Another instructor cannot delete it (nor learn that it exists).
    let stranger = t.signup("other@example.com", "別の講師").await;
    let r = stranger.submit("/courses/media", &format!("/courses/media/{mov_id}/delete"), &[]).await;
    assert_eq!(r.location.as_deref(), Some("/courses/media"));
    assert!(stranger.get("/courses/media").await.text.contains("このファイルはすでに削除されたか、存在しません。"));
    assert_eq!(fetch(served.clone()).await, 200, "still there");
    // A file still 処理中 is not deleted: its conversion would store files for nothing.
    let r = c.put_upload("/courses/media/upload", &token, "音声.wav", std::fs::read(&f.wav).unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let wav_id = id_of(&c.get("/courses/media").await.text, "音声.wav");
    let r = c.submit("/courses/media", &format!("/courses/media/{wav_id}/delete"), &[]).await;
    assert_eq!(r.location.as_deref(), Some("/courses/media"));
    assert!(c.get("/courses/media").await.text.contains("変換中のファイルは削除できません。"));
    t.run_jobs().await;
    let files_before = std::fs::read_dir(&stored).unwrap().count();
    let r = c.submit("/courses/media", &format!("/courses/media/{mov_id}/delete"), &[]).await;
    assert_eq!(r.location.as_deref(), Some("/courses/media"));
    let page = c.get("/courses/media").await.text;
    assert!(
        page.contains("「講義 第1回.mov」を削除しました。すでに LINE で送ったメッセージからは消えません。"),
        "{page}"
    );
    assert!(!page.contains("data-name=\"講義 第1回.mov\"") && page.contains("data-name=\"音声.wav\""), "{page}");
    // The stored copies go through a job queued with the deletion (retried while the store fails).
    t.run_jobs().await;
    assert_eq!(fetch(served).await, 404, "no longer served");
    assert_eq!(std::fs::read_dir(&stored).unwrap().count(), files_before - 2, "the video and its preview are removed");
    let r = c.submit("/courses/media", &format!("/courses/media/{wav_id}/delete"), &[]).await;
    assert_eq!(r.location.as_deref(), Some("/courses/media"));
    assert!(c.get("/courses/media").await.text.contains("まだファイルはありません。"));
    t.run_jobs().await;
    assert_eq!(std::fs::read_dir(&stored).unwrap().count(), files_before - 3);
}

/// AAC behind an ID3 tag: the first bytes say MP3, the probe says AAC; LINE gets an M4A
/// served as one (not M4A bytes under an .mp3 name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_inside_decides_the_name_and_type_served() {
    use tsunagu::media::library::accept;
    use tsunagu_store::media::{self as media_store, MediaStatus};
    let f = fixtures();
    let adts = make(f.m4a.parent().unwrap(), "talk.aac", &format!("{AUDIO} -c:a aac -f adts"));
    let mut tagged = b"ID3\x04\x00\x00\x00\x00\x00\x00".to_vec();
    tagged.extend(std::fs::read(&adts).unwrap());
    let t = crate::helpers::TestApp::spawn().await;
    t.signup("teacher@example.com", "講師").await;
    let me = {
        let mut c = t.app.store.read().await.unwrap();
        let e = tsunagu_core::Email::parse("teacher@example.com").unwrap();
        tsunagu_store::accounts::credentials_by_email(&mut c, &e).await.unwrap().unwrap().account.id
    };
    let id = accept(&t.app, me, "録音.mp3", std::io::Cursor::new(tagged)).await.unwrap();
    t.run_jobs().await;
    let mut c = t.app.store.read().await.unwrap();
    let m = media_store::get(&mut c, me, id).await.unwrap().unwrap();
    assert_eq!(m.status, MediaStatus::Ready, "{}", m.reason);
    assert!(m.file_name.ends_with(".m4a"), "{}", m.file_name);
    let got = crate::helpers::http().build().unwrap().get(format!("{}/media/{}", t.addr, m.file_name)).send().await;
    assert_eq!(got.unwrap().headers()["content-type"], "audio/mp4");
}

/// A photo whose start-of-frame lies past the first 64 KiB (large EXIF/XMP segments, as
/// cameras and Photoshop write) is a good JPEG, not a damaged one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jpeg_with_large_metadata_is_accepted() {
    let f = fixtures();
    let jpg = std::fs::read(&f.jpg).unwrap();
    let mut big = jpg[..2].to_vec();
    for _ in 0..2 {
        // APP1 segments of 65,533 bytes of payload each (the most one segment holds).
        big.extend([0xFF, 0xE1, 0xFF, 0xFF]);
        big.extend(std::iter::repeat_n(b'x', 0xFFFF - 2));
    }
    big.extend(&jpg[2..]);
    let path = f.jpg.with_file_name("camera.jpg");
    std::fs::write(&path, &big).unwrap();
    let found = inspect(&path).await.unwrap();
    assert_eq!((found.format, found.width, found.height), (Format::Jpeg, Some(320), Some(240)));
}

/// Without ffmpeg nothing can be checked: an upload is refused at once with the reason (the
/// instructor does not send 200MB to hear it later), and nothing is recorded or kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ffmpeg_uploads_are_refused_with_the_reason() {
    use tsunagu::media::library::{UploadError, accept};
    let f = fixtures();
    let t = crate::helpers::TestApp::spawn_with(|c| c.media.ffmpeg = "/nonexistent/ffmpeg".into()).await;
    t.signup("teacher@example.com", "講師").await;
    let me = {
        let mut c = t.app.store.read().await.unwrap();
        let e = tsunagu_core::Email::parse("teacher@example.com").unwrap();
        tsunagu_store::accounts::credentials_by_email(&mut c, &e).await.unwrap().unwrap().account.id
    };
    let file = tokio::fs::File::open(&f.mov).await.unwrap();
    match accept(&t.app, me, "講義.mov", file).await {
        Err(UploadError::Refused(r @ Refusal::ToolMissing { .. })) => {
            assert!(r.message_ja().contains("ffmpeg が見つからないか正しく動かない"), "{}", r.message_ja());
            assert!(r.message_ja().contains("ファイルの問題ではありません"));
        }
        other => panic!("{other:?}"),
    }
    let mut c = t.app.store.read().await.unwrap();
    assert!(tsunagu_store::media::list(&mut c, me).await.unwrap().is_empty());
    assert_eq!(leftovers(&t.app.config.data.dir.join("media-intake")), 0);

    // Installed but broken (it fails even `-version`): the operator's to fix, not "busy".
    let broken = crate::helpers::TestApp::spawn_with(|c| c.media.ffmpeg = "/bin/false".into()).await;
    let file = tokio::fs::File::open(&f.mov).await.unwrap();
    match accept(&broken.app, me, "講義.mov", file).await {
        Err(UploadError::Refused(Refusal::ToolMissing { detail })) => assert!(detail.contains("false"), "{detail}"),
        other => panic!("{other:?}"),
    }
}

/// A conversion whose job ended for good without settling its file (the worker was killed on
/// the last attempt, the database was down, the handler panicked) is shown as 失敗 with a
/// reason, not 処理中 forever, and its upload is removed. At start, the intake keeps only
/// what 処理中 files still need.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversion_that_never_finished_is_reported_and_cleaned_up() {
    use tsunagu::media::library::{accept, clean_intake};
    use tsunagu_store::media::{self as media_store, MediaStatus};
    let f = fixtures();
    let t = crate::helpers::TestApp::spawn().await;
    let c = t.signup("teacher@example.com", "講師").await;
    let me = {
        let mut conn = t.app.store.conn().await.unwrap();
        let e = tsunagu_core::Email::parse("teacher@example.com").unwrap();
        let id = tsunagu_store::accounts::credentials_by_email(&mut conn, &e).await.unwrap().unwrap().account.id;
        tsunagu_store::accounts::set_plan(&mut conn, id, tsunagu_core::Plan::Business, 1).await.unwrap();
        id
    };
    let stuck = accept(&t.app, me, "講義.mov", tokio::fs::File::open(&f.mov).await.unwrap()).await.unwrap();
    let waiting = accept(&t.app, me, "音声.wav", tokio::fs::File::open(&f.wav).await.unwrap()).await.unwrap();
    let intake = t.app.config.data.dir.join("media-intake");
    let (stuck_upload, waiting_upload) = {
        let mut conn = t.app.store.conn().await.unwrap();
        let s = media_store::get(&mut conn, me, stuck).await.unwrap().unwrap().upload_path;
        let w = media_store::get(&mut conn, me, waiting).await.unwrap().unwrap().upload_path;
        // What the queue does when a worker dies during the last allowed attempt.
        sqlx::query("UPDATE jobs SET state = 'failed', last_error = 'the worker stopped' WHERE dedupe_key = $1")
            .bind(format!("media:{stuck}"))
            .execute(&mut *conn)
            .await
            .unwrap();
        (PathBuf::from(s), PathBuf::from(w))
    };
    assert!(stuck_upload.exists() && waiting_upload.exists());
    // Leftovers of a process that stopped: a half-received upload, a conversion's work folder,
    // an upload nothing needs.
    std::fs::write(intake.join("abandoned.part"), b"half").unwrap();
    std::fs::create_dir_all(intake.join("work-999")).unwrap();
    std::fs::write(intake.join("work-999/main.mp4"), b"x").unwrap();
    std::fs::write(intake.join(format!("stray.{}", intake::UPLOAD_EXT)), b"x").unwrap();
    // A work folder of the file still 処理中 (its conversion may be running).
    let working = intake.join(format!("work-{waiting}-{}", "0".repeat(32)));
    std::fs::create_dir_all(&working).unwrap();

    let page = c.get("/courses/media").await.text;
    assert!(page.contains("変換の途中で処理が止まったため完了できませんでした"), "{page}");
    assert!(page.contains("status-failed") && page.contains("status-processing"), "{page}");
    {
        let mut conn = t.app.store.read().await.unwrap();
        let m = media_store::get(&mut conn, me, stuck).await.unwrap().unwrap();
        assert_eq!(m.status, MediaStatus::Failed);
        let w = media_store::get(&mut conn, me, waiting).await.unwrap().unwrap();
        assert_eq!(w.status, MediaStatus::Processing, "a file whose job is still queued is left alone");
    }
    // Removed in the background, after the page answered.
    for _ in 0..100 {
        if !stuck_upload.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!stuck_upload.exists(), "the failed file's upload is removed");

    let hour = std::time::Duration::from_secs(3600);
    assert_eq!(clean_intake(&t.app, hour).await.unwrap(), 0, "fresh files may be another process's work");
    assert_eq!(clean_intake(&t.app, std::time::Duration::ZERO).await.unwrap(), 3);
    assert!(waiting_upload.exists() && working.exists(), "what a 処理中 file needs stays");
    assert_eq!(leftovers(&intake), 2);
    t.run_jobs().await;
    let mut conn = t.app.store.read().await.unwrap();
    assert_eq!(media_store::get(&mut conn, me, waiting).await.unwrap().unwrap().status, MediaStatus::Ready);
    assert_eq!(clean_intake(&t.app, std::time::Duration::ZERO).await.unwrap(), 1, "settled: its folder goes");
    assert_eq!(leftovers(&intake), 0);
}

/// An HLS playlist or a concat script naming `target`, behind `header` (issue 11 §1: 99 bytes
/// that ffprobe, left to guess, took for a 3-second MP3 whose sound was the file it named).
fn naming(header: &[u8], script: &str, target: &str) -> Vec<u8> {
    let body = match script {
        "hls" => format!("#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:3,\n{target}\n#EXT-X-ENDLIST\n"),
        _ => format!("ffconcat version 1.0\nfile {target}\n"),
    };
    [header, body.as_bytes()].concat()
}

const ID3: &[u8] = b"ID3\x04\0\0\0\0\0\0";

/// The first bytes of each audio and video format the manual allows, with its extension.
const HEADERS: [(&str, &[u8]); 7] = [
    ("mp3", ID3),
    ("wav", b"RIFF\x24\0\0\0WAVE"),
    ("aif", b"FORM\0\0\0\x24AIFF"),
    ("aiff", b"FORM\0\0\0\x24AIFC"),
    ("m4a", b"\0\0\0\x14ftypM4A \0\0\0\0M4A "),
    ("mp4", b"\0\0\0\x14ftypisom\0\0\0\0isom"),
    ("mov", b"\0\0\0\x14ftypqt  \0\0\0\0qt  "),
];

/// A 3-second video with sound: what an attack would like to read.
fn victim(dir: &Path) -> PathBuf {
    make(
        dir,
        "victim.mp4",
        "-f lavfi -i testsrc=size=160x120:rate=25:duration=3 -f lavfi -i sine=frequency=440:duration=3 -c:v libx264 -pix_fmt yuv420p -c:a aac",
    )
}

/// 3 seconds of sound (read through a playlist without a complaint, where ffmpeg reports the
/// video's MP4 as a partial segment).
fn victim_sound(dir: &Path) -> PathBuf {
    make(dir, "victim.mp3", "-f lavfi -i sine=frequency=440:duration=3 -c:a libmp3lame")
}

/// Whether anything reads a file from now on, from its access time: set far in the past, the
/// kernel moves it forward on the next read (under `relatime` too, an access time older than
/// the modification time is updated). `None` where reads leave no trace (`noatime`).
struct Reads(PathBuf);

impl Reads {
    fn watch(path: &Path) -> Option<Reads> {
        let reads = Reads(path.to_path_buf());
        reads.reset();
        std::fs::read(path).unwrap();
        if !reads.seen() {
            eprintln!("{}: reads do not change the access time here; relying on the refusals", path.display());
            return None;
        }
        reads.reset();
        Some(reads)
    }

    fn reset(&self) {
        let f = std::fs::File::open(&self.0).unwrap();
        f.set_times(std::fs::FileTimes::new().set_accessed(std::time::UNIX_EPOCH)).unwrap();
    }

    fn seen(&self) -> bool {
        std::fs::metadata(&self.0).unwrap().accessed().unwrap() > std::time::UNIX_EPOCH
    }
}

fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    [&(body.len() as u32 + 8).to_be_bytes()[..], kind, body].concat()
}

/// An MP4 with `victim`'s index and none of its data: each track's data reference is a Mac
/// alias naming `name` in the same folder, as ffmpeg's `mov_read_dref` reads one (fixed fields,
/// then typed entries; type 2 is the path). ffmpeg reads such a track from that file only with
/// `enable_drefs`.
fn external_tracks(victim: &[u8], name: &str) -> Vec<u8> {
    fn alias(name: &str) -> Vec<u8> {
        let mut file_name = name.as_bytes().to_vec();
        file_name.resize(63, 0);
        let mut path = format!("/elsewhere/{name}").into_bytes();
        if path.len() % 2 == 1 {
            path.push(0);
        }
        let record = [
            &[0u8; 10][..],
            &[0; 28], // volume name (length, text)
            &[0; 12],
            &[name.len() as u8],
            &file_name,
            &[0; 16],
            &[0, 1, 0, 1], // one level up from the alias, one down to the target: the same folder
            &[0; 16],
            &[0, 2],
            &(path.len() as u16).to_be_bytes(),
            &path,
            &[0xFF, 0xFF, 0, 0], // the end of the entries
        ]
        .concat();
        let entry = mp4_box(b"alis", &[&[0u8; 4][..], &record].concat()); // flags 0: not in this file
        mp4_box(b"dref", &[&[0u8, 0, 0, 0, 0, 0, 0, 1][..], &entry].concat())
    }
    fn rewrite(b: &[u8], name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i + 8 <= b.len() {
            let size = u32::from_be_bytes(b[i..i + 4].try_into().unwrap()) as usize;
            let kind: [u8; 4] = b[i + 4..i + 8].try_into().unwrap();
            let whole = &b[i..i + size];
            match &kind {
                b"ftyp" => out.extend(whole),
                b"moov" | b"trak" | b"mdia" | b"minf" | b"dinf" => {
                    out.extend(mp4_box(&kind, &rewrite(&whole[8..], name)))
                }
                b"dref" => out.extend(alias(name)),
                // The media data stays behind: only the index is carried.
                b"mdat" | b"free" | b"skip" => {}
                _ => out.extend(whole),
            }
            i += size;
        }
        out
    }
    rewrite(victim, name)
}

/// Issue 11 §1: files that name another file — a playlist or concat script behind an ID3 tag or
/// any other allowed format's first bytes, by a relative or an absolute path, under every audio
/// and video extension; an MP4 whose tracks' data lies in another file — are refused as damaged
/// by the intake and by `tsunagu media inspect`, and nothing is read from the file they name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cannot_read_another_file() {
    let dir = TempDir::new("tsunagu-media-attack");
    let d = dir.path().to_path_buf();
    let victims = [victim(&d), victim_sound(&d)];
    let mut cases = Vec::new();
    for (ext, header) in HEADERS {
        for script in ["hls", "concat"] {
            for v in &victims {
                let name = v.file_name().unwrap().to_string_lossy().into_owned();
                for (how, target) in [("relative", name.clone()), ("absolute", v.display().to_string())] {
                    // Behind an ID3 tag (which ffmpeg skips before guessing) under this
                    // extension, and behind this format's own first bytes.
                    for (what, head) in [("id3", ID3), ("own", header)] {
                        let p = d.join(format!("{script}-{how}-{what}-{name}.{ext}"));
                        std::fs::write(&p, naming(head, script, &target)).unwrap();
                        cases.push(p);
                    }
                }
            }
        }
    }
    let drefs = d.join("external-tracks.mp4");
    std::fs::write(&drefs, external_tracks(&std::fs::read(&victims[0]).unwrap(), "victim.mp4")).unwrap();
    cases.push(drefs);
    let reads: Vec<Reads> = victims.iter().filter_map(|v| Reads::watch(v)).collect();
    for p in &cases {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        match inspect(p).await {
            Err(r @ Refusal::Damaged { .. }) => {
                assert!(r.message_ja().contains("壊れているか、途中で切れています"), "{name}: {}", r.message_ja())
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    // The command line decides as the intake does.
    let cli = ["hls-relative-id3-victim.mp3.mp3", "concat-relative-id3-victim.mp4.m4a", "external-tracks.mp4"];
    for p in cli.map(|n| d.join(n)) {
        let out = Command::new(env!("CARGO_BIN_EXE_tsunagu")).args(["media", "inspect"]).arg(&p).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!((out.status.code(), v["code"].as_str()), (Some(1), Some("media.damaged")), "{}: {v}", p.display());
        assert!(v["message"].as_str().unwrap().contains("壊れているか"), "{v}");
    }
    for r in &reads {
        assert!(!r.seen(), "{} was read", r.0.display());
    }
    // The files named are good ones: the attacks fail for what they are.
    for v in &victims {
        assert!(inspect(v).await.unwrap().duration_ms.is_some_and(|d| (3000..3100).contains(&d)), "{}", v.display());
    }
}

/// Issue 11 §1 through the upload and its conversion job: uploads naming another instructor's
/// conversion in progress in the intake (by its path from the intake, or in full) end 失敗
/// with the "damaged" reason and store nothing. ffprobe (a wrapper noting what it is given)
/// sees each upload in a folder of its own holding nothing of anyone else's, gone afterwards.
async fn an_upload_naming_another_file_fails_and_stores_nothing(db: crate::helpers::Db) {
    use crate::helpers::{TestApp, database_url, test_config};
    use tsunagu::media::library::accept;
    use tsunagu_store::media::{self as media_store, MediaStatus};
    let dir = TempDir::new("tsunagu-app");
    let Some(url) = database_url(db, dir.path()).await else { return };
    let tools = TempDir::new("tsunagu-media-tools");
    let seen = tools.path().join("seen");
    let ffprobe = tools.path().join("ffprobe");
    std::fs::write(
        &ffprobe,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in *media-intake*) p=${{a#file:}}; printf '%s\\t%s\\n' \"$p\" \"$(ls -A \"$(dirname \"$p\")\" | tr '\\n' ' ')\" >> {};; esac; done\nexec ffprobe \"$@\"\n",
            seen.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&ffprobe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut config = test_config(dir.path(), &url);
    config.media.ffprobe = ffprobe;
    // PostgreSQL does not make a key (every instance must share one).
    tsunagu::crypto::Keyring::new(tsunagu::crypto::MasterKey::generate())
        .write_file(&config.master_key_path())
        .unwrap();
    let t = TestApp::start(config, dir).await;
    t.signup("teacher@example.com", "講師").await;
    let me = {
        let mut c = t.app.store.conn().await.unwrap();
        let e = tsunagu_core::Email::parse("teacher@example.com").unwrap();
        tsunagu_store::accounts::credentials_by_email(&mut c, &e).await.unwrap().unwrap().account.id
    };
    // Another instructor's sound being converted: its output, 3 seconds of AAC, in the intake
    // (read through a playlist without a complaint).
    let intake = t.app.config.data.dir.join("media-intake");
    let theirs = intake.join(format!("work-9-{}", "7".repeat(32)));
    std::fs::create_dir_all(&theirs).unwrap();
    make(&theirs, "main.m4a", "-f lavfi -i sine=frequency=440:duration=3 -c:a aac");
    let from_intake = format!("{}/main.m4a", theirs.file_name().unwrap().to_string_lossy());
    let full = theirs.join("main.m4a").display().to_string();
    let mut mine = Vec::new();
    for script in ["hls", "concat"] {
        for target in [from_intake.as_str(), full.as_str()] {
            let body = std::io::Cursor::new(naming(ID3, script, target));
            mine.push(accept(&t.app, me, &format!("{script}.mp3"), body).await.unwrap());
        }
    }
    t.run_jobs().await;

    let mut c = t.app.store.conn().await.unwrap();
    let stored = t.app.config.data.dir.join("media");
    for id in &mine {
        let m = media_store::get(&mut c, me, *id).await.unwrap().unwrap();
        assert_eq!(m.status, MediaStatus::Failed, "{id}: {}", m.reason);
        assert!(m.reason.contains("壊れているか、途中で切れています"), "{id}: {}", m.reason);
    }
    assert_eq!(leftovers(&stored), 0, "nothing stored: {:?}", std::fs::read_dir(&stored).map(|d| d.count()));

    // Every look at an upload was in a folder of its own: that upload (and what is made of it).
    let seen = std::fs::read_to_string(&seen).unwrap();
    let mut folders = std::collections::HashSet::new();
    for line in seen.lines() {
        let (path, listing) = line.split_once('\t').unwrap();
        let folder = Path::new(path).parent().unwrap();
        assert!(folder.parent() == Some(intake.as_path()) && folder != theirs, "{line}");
        for entry in listing.split_whitespace() {
            assert!(["upload.upload", "main.mp4", "main.m4a", "preview.jpg"].contains(&entry), "{line}");
        }
        folders.insert(folder.to_path_buf());
    }
    assert_eq!(folders.len(), mine.len(), "one folder per conversion: {seen}");
    assert!(folders.iter().all(|f| !f.exists()), "removed after");
    assert_eq!(leftovers(&intake), 1, "only the other conversion's folder is left");
    drop(c);
    t.assert_no_jobs_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_naming_another_file_fails_and_stores_nothing_sqlite() {
    an_upload_naming_another_file_fails_and_stores_nothing(crate::helpers::Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_naming_another_file_fails_and_stores_nothing_postgres() {
    an_upload_naming_another_file_fails_and_stores_nothing(crate::helpers::Db::Postgres).await;
}

/// ffprobe's container is checked against the demuxer it was told to use: a report of another
/// (a playlist, say, were the demuxer ever left to ffprobe's guess) refuses the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_other_than_the_one_asked_for_is_refused() {
    let dir = TempDir::new("tsunagu-media");
    let mp3 = make(dir.path(), "talk.mp3", &format!("{AUDIO} -c:a libmp3lame"));
    let report = |format_name: &str| {
        let script = dir.path().join(format!("ffprobe-{}", format_name.len()));
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ncat <<'EOF'\n{{\"format\": {{\"format_name\": \"{format_name}\", \"duration\": \"2.0\"}}, \"streams\": [{{\"codec_type\": \"audio\", \"codec_name\": \"mp3\", \"duration\": \"2.0\"}}]}}\nEOF\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        Tools { ffmpeg: "ffmpeg".into(), ffprobe: script }
    };
    let found = intake::inspect(&report("mp3"), &mp3).await.unwrap();
    assert_eq!((found.format, found.duration_ms), (Format::Mp3, Some(2000)), "the report as asked for");
    match intake::inspect(&report("hls"), &mp3).await {
        Err(Refusal::Damaged { format: Format::Mp3, detail }) => assert!(detail.contains("hls"), "{detail}"),
        other => panic!("{other:?}"),
    }
}
