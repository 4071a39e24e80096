//! Sending through the client against the LINE sandbox (a program, not a test): pushes per
//! second as a ratio of LINE's 2,000/s, and multicast recipients per second (200 requests/s of
//! up to 500 recipients). The goal: ≥ 0.9 of the limit with zero 429s.
//!
//! `cargo run --release -p tsunagu-line --example line_send_bench`

use std::sync::Arc;
use std::time::Instant;

use tsunagu_line::client::{RetryKey, TokenKind};
use tsunagu_line::message::Message;
use tsunagu_line::{Channel, LineClient, LineConfig};
use tsunagu_sandbox::line::{LineChannelSpec, LineSandbox};

const CHANNEL: &str = "2000000001";
const SECRET: &str = "bench-secret";

fn steady(mut done: Vec<Instant>) -> f64 {
    done.sort();
    let (lo, hi) = (done.len() / 10, done.len() * 9 / 10);
    (hi - lo) as f64 / done[hi].duration_since(done[lo]).as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sb = LineSandbox::new();
    sb.set_recording(false);
    sb.add_channel(LineChannelSpec {
        channel_id: CHANNEL.into(),
        channel_secret: SECRET.into(),
        bot_user_id: format!("U{}", "b".repeat(32)),
        basic_id: "@bench".into(),
        display_name: "bench".into(),
        monthly_quota: None,
        login: None,
    });
    let users: Vec<String> = (0..20_000).map(|_| sb.new_user_id()).collect();
    for u in &users {
        sb.set_friend(CHANNEL, u);
    }
    let detached = tsunagu_sandbox::Detached::serve(sb.router()).expect("sandbox");
    let base = detached.base.clone();
    let client = Arc::new(LineClient::new(LineConfig::new(&base)));
    let ch = Channel { id: CHANNEL.into(), secret: SECRET.into(), token_kind: TokenKind::Stateless };
    client.token(&ch).await.expect("token");

    // Pushes: 10,000 (five seconds at the limit), 256 in flight.
    let pushes = 10_000;
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for u in &users[..pushes] {
        let u = u.clone();
        let (client, ch, gate) = (client.clone(), ch.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _p = gate.acquire_owned().await.expect("gate");
            client.push(&ch, &u, &[Message::text("bench")], &RetryKey::new(client.now_ms())).await.expect("push");
            Instant::now()
        }));
    }
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.expect("task"));
    }
    let overall = pushes as f64 / t0.elapsed().as_secs_f64();
    let push_rate = steady(done);
    let s = sb.stats();
    let peak = s.max_in_any_second.get(&(CHANNEL.to_string(), "push".to_string())).copied().unwrap_or(0);
    println!(
        "| push | 2000 requests/s | {pushes} | {overall:.0} | {push_rate:.0} | {:.3} | {} | {peak} |",
        push_rate / 2000.0,
        s.rate_429
    );

    // Multicast: 1,000 requests of 500 recipients (five seconds at the limit), 64 in flight.
    let requests = 1_000;
    let batches: Vec<Vec<String>> = users.chunks(500).map(|c| c.to_vec()).collect();
    let t1 = Instant::now();
    let mut tasks = Vec::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    for i in 0..requests {
        let (client, ch, gate) = (client.clone(), ch.clone(), gate.clone());
        let to = batches[i % batches.len()].clone();
        tasks.push(tokio::spawn(async move {
            let _p = gate.acquire_owned().await.expect("gate");
            client
                .multicast(&ch, &to, &[Message::text("bench")], &RetryKey::new(client.now_ms()))
                .await
                .expect("multicast");
            Instant::now()
        }));
    }
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.expect("task"));
    }
    let overall = requests as f64 / t1.elapsed().as_secs_f64();
    let mc_rate = steady(done);
    let s2 = sb.stats();
    let peak = s2.max_in_any_second.get(&(CHANNEL.to_string(), "multicast".to_string())).copied().unwrap_or(0);
    println!(
        "| multicast | 200 requests/s | {requests} × 500 | {overall:.0} | {mc_rate:.0} ({:.0} recipients/s) | {:.3} | {} | {peak} |",
        mc_rate * 500.0,
        mc_rate / 200.0,
        s2.rate_429 - s.rate_429
    );
}
