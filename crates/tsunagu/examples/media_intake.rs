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
    over_http().await;
}

/// 190MB through the app's upload route, client and server in this process.
async fn over_http() {
    use std::sync::Arc;
    let dir = std::env::temp_dir().join(format!("tsunagu-media-bench-app-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = tsunagu::config::Config::default();
    c.data.dir = dir.clone();
    c.database.url = format!("sqlite://{}/t.db", dir.display());
    c.http.listen = "127.0.0.1:0".into();
    c.jobs.enabled = false;
    c.log.level = "warn".into();
    let app = tsunagu::startup::build_app(c, Arc::new(tsunagu::clock::SystemClock)).await.expect("app");
    let input = tsunagu::accounts::SignupInput {
        email: "teacher@example.com",
        name: "講師",
        password: "benchmark-password",
        password_confirm: "benchmark-password",
        plan: tsunagu_core::Plan::Business,
        role: tsunagu_core::Role::Member,
    };
    tsunagu::accounts::sign_up(&app, &input).await.map_err(|e| e.to_string()).expect("account");
    let server = tsunagu::startup::Server::bind(app.clone()).await.expect("bind");
    let base = format!("http://{}", server.local_addr());
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move { server.run(s).await });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let field = |html: &str, marker: &str| {
        let s = html.find(marker).expect(marker) + marker.len();
        html[s..s + html[s..].find('"').unwrap()].to_string()
    };
    let login = http.get(format!("{base}/login")).send().await.unwrap().text().await.unwrap();
    let token = field(&login, "name=\"csrf_token\" value=\"");
    let form = [("csrf_token", token.as_str()), ("email", "teacher@example.com"), ("password", "benchmark-password")];
    http.post(format!("{base}/login")).form(&form).send().await.unwrap();
    let page = http.get(format!("{base}/courses/media")).send().await.unwrap().text().await.unwrap();
    let csrf = field(&page, "data-csrf=\"");

    let total = 190 * MB;
    let chunks = futures_util::stream::unfold(0u64, move |sent| async move {
        if sent >= total {
            return None;
        }
        let n = (total - sent).min(64 * 1024) as usize;
        let mut chunk = vec![0u8; n];
        for (i, b) in chunk.iter_mut().enumerate() {
            if let Some(h) = HEAD.get(sent as usize + i) {
                *b = *h;
            }
        }
        Some((Ok::<_, std::io::Error>(chunk), sent + n as u64))
    });
    let rss0 = status_kb("VmRSS:");
    let hwm0 = status_kb("VmHWM:");
    let t = Instant::now();
    let r = http
        .put(format!("{base}/courses/media/upload"))
        .header("x-csrf-token", csrf)
        .header("x-file-name", "video.mp4")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let answer = r.text().await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    let (rss1, hwm1) = (status_kb("VmRSS:"), status_kb("VmHWM:"));
    assert!(status.is_success(), "{status} {answer}");
    println!(
        "| 190MB video over HTTP (PUT /courses/media/upload) | HTTP {} | {:.0} MB/s | VmRSS {} → {} KiB (+{} KiB) | peak VmHWM {} → {} KiB (+{} KiB) |",
        status.as_u16(),
        190.0 / secs,
        rss0,
        rss1,
        rss1.saturating_sub(rss0),
        hwm0,
        hwm1,
        hwm1.saturating_sub(hwm0)
    );
    stop.cancel();
    let _ = task.await;
    let _ = std::fs::remove_dir_all(&dir);
}
