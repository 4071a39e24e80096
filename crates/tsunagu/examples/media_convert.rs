//! Conversion time per MB on this machine (a program, not a test): a MOV (H.264/AAC, remuxed
//! to MP4), a MOV with other codecs (transcoded to H.264/AAC), an iPhone-style HDR MOV (HEVC
//! HLG, tone-mapped to SDR H.264) and a WAV (to M4A), each made by ffmpeg first, then converted
//! with `media::convert::apply`.
//!
//! `cargo run --release -p tsunagu --example media_convert`

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use tsunagu::media::convert::apply;
use tsunagu::media::intake::Step;
use tsunagu::media::process::Tools;

fn make(out: &Path, args: &str) {
    let ok = Command::new("ffmpeg").args(["-v", "error", "-y"]).args(args.split_whitespace()).arg(out).status();
    assert!(ok.is_ok_and(|s| s.success()), "ffmpeg made {}", out.display());
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = std::env::temp_dir().join(format!("tsunagu-convert-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let video = "-f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 60";
    let cases = [
        (
            "mov-h264.mov",
            format!("{video} -c:v libx264 -preset veryfast -b:v 4M -pix_fmt yuv420p -c:a aac"),
            Step::RemuxToMp4,
            "out1.mp4",
        ),
        ("mov-mpeg4.mov", format!("{video} -c:v mpeg4 -b:v 4M -c:a pcm_s16le"), Step::TranscodeToMp4, "out2.mp4"),
        (
            // As an iPhone records by default: 1080p30 HEVC 10-bit HLG; tone-mapped to SDR.
            "iphone-hdr.mov",
            "-f lavfi -i testsrc2=size=1920x1080:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 10 \
             -c:v libx265 -preset ultrafast -b:v 10M -x265-params log-level=error -pix_fmt yuv420p10le \
             -color_primaries bt2020 -color_trc arib-std-b67 -colorspace bt2020nc -tag:v hvc1 -c:a aac"
                .to_string(),
            Step::TranscodeToMp4,
            "out4.mp4",
        ),
        (
            "talk.wav",
            "-f lavfi -i sine=frequency=440:sample_rate=48000 -ac 2 -t 300".to_string(),
            Step::ToM4a,
            "out3.m4a",
        ),
    ];
    let tools = Tools::default();
    println!("| conversion | input | input MB | seconds | seconds per MB |");
    println!("|---|---|---|---|---|");
    for (name, args, step, out) in cases {
        let input = dir.join(name);
        make(&input, &args);
        let mb = std::fs::metadata(&input).unwrap().len() as f64 / (1024.0 * 1024.0);
        let t = Instant::now();
        apply(&tools, step, &input, &dir.join(out)).await.expect("conversion");
        let s = t.elapsed().as_secs_f64();
        println!("| {step:?} | {name} | {mb:.1} | {s:.2} | {:.3} |", s / mb);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
