//! Memory of the upload intake (a program, not a test): a 190MB video streamed through
//! `media::intake::receive` to disk, and a 201MB one refused; then the same over HTTP, through
//! the console's upload route of a running app (`PUT /courses/media/upload`, logged in, CSRF
//! header), with the process's resident memory (VmRSS, and its peak VmHWM, from
//! /proc/self/status) before and after.
//!
//! `cargo run --release -p tsunagu --example media_intake`

use std::time::Instant;

use tokio::io::AsyncRead;
use tsunagu::media::intake::{ReceiveError, Refusal, receive};
use tsunagu::media::sniff::MB;

/// An MP4 header followed by zeros: `total` bytes, produced as the network would, in chunks.
struct Upload {
    sent: u64,
    total: u64,
}

const HEAD: &[u8] = b"\0\0\0\x20ftypisom\0\0\x02\0isomiso2avc1mp41";

impl AsyncRead for Upload {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.total - self.sent).min(64 * 1024) as usize;
        let mut chunk = vec![0u8; n];
        for (i, b) in chunk.iter_mut().enumerate() {
            if let Some(h) = HEAD.get(self.sent as usize + i) {
                *b = *h;
            }
        }
        buf.put_slice(&chunk);
        self.sent += n as u64;
        std::task::Poll::Ready(Ok(()))
    }
}

fn status_kb(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = std::env::temp_dir().join(format!("tsunagu-media-bench-{}", std::process::id()));
    let rss0 = status_kb("VmRSS:");
    let hwm0 = status_kb("VmHWM:");
    let t = Instant::now();
    let got = receive(&dir, Upload { sent: 0, total: 190 * MB }, None).await.expect("190MB accepted");
    let secs = t.elapsed().as_secs_f64();
    let rss1 = status_kb("VmRSS:");
    let hwm1 = status_kb("VmHWM:");
    println!(
        "| 190MB video accepted | {} bytes on disk | {:.0} MB/s | VmRSS {} → {} KiB (+{} KiB) | peak VmHWM {} → {} KiB (+{} KiB) |",
        got.size,
        190.0 / secs,
        rss0,
        rss1,
        rss1.saturating_sub(rss0),
        hwm0,
        hwm1,
        hwm1.saturating_sub(hwm0)
    );
    std::fs::remove_file(&got.path).expect("remove");
    let refused = receive(&dir, Upload { sent: 0, total: 201 * MB }, None).await;
    assert!(matches!(refused, Err(ReceiveError::Refused(Refusal::TooLarge { .. }))), "{refused:?}");
    let left = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    let hwm2 = status_kb("VmHWM:");
    println!(
        "| 201MB video refused | {left} files left | | | peak VmHWM {hwm2} KiB (+{} KiB from start) |",
        hwm2 - hwm0
    );
    let _ = std::fs::remove_dir_all(&dir);
}
