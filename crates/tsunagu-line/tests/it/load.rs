//! 10,000 users, one push each, while the sandbox injects 5xx (before and after the work) and
//! timeouts (after the work): every user receives the message exactly once, and no rate limit
//! is exceeded.

use std::collections::HashMap;
use std::time::Duration;

use tsunagu_line::client::RetryKey;
use tsunagu_line::message::Message;
use tsunagu_sandbox::line::LineFaults;

use crate::support::*;

const USERS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_pushes_through_faults_arrive_exactly_once() {
    let l = Line::start_with(None, true, |c| c.timeout = Duration::from_millis(800)).await;
    l.sb.set_recording(false);
    let users: Vec<String> = (0..USERS).map(|i| l.friend(&format!("生徒{i}"))).collect();
    l.sb.set_faults(LineFaults {
        rate_500: 0.05,
        rate_timeout: 0.02,
        timeout_hold: Duration::from_millis(1200),
        seed: 11,
    });
    // Retry keys are created (and would be stored) before the first attempt.
    let keys: Vec<RetryKey> = users.iter().map(|_| RetryKey::new(l.client.now_ms())).collect();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let mut pending: Vec<usize> = (0..USERS).collect();
    for _round in 0..5 {
        let mut tasks = Vec::new();
        for &i in &pending {
            let (client, ch, gate) = (l.client.clone(), l.ch.clone(), gate.clone());
            let (user, key) = (users[i].clone(), keys[i].clone());
            tasks.push(tokio::spawn(async move {
                let _p = gate.acquire_owned().await.unwrap();
                (i, client.push(&ch, &user, &[Message::text("今日のレッスン")], &key).await)
            }));
        }
        let mut failed = Vec::new();
        for t in tasks {
            let (i, r) = t.await.unwrap();
            if let Err(e) = r {
                assert!(e.retryable(), "user {i}: {e:?}");
                failed.push(i);
            }
        }
        pending = failed;
        if pending.is_empty() {
            break;
        }
    }
    assert!(pending.is_empty(), "{} users left undone", pending.len());
    let stats = l.sb.stats();
    assert!(stats.injected_500_after > 0 && stats.injected_timeouts > 0 && stats.injected_500_before > 0);
    assert!(stats.duplicates_409 > 0, "lost answers were retried and recognised");
    assert_eq!(stats.rate_429, 0, "no rate limit exceeded");
    for ((_, endpoint), peak) in &stats.max_in_any_second {
        assert!(*peak <= 2000, "{endpoint}: {peak} in one second");
    }
    let mut per_user: HashMap<String, usize> = HashMap::new();
    for r in l.sb.received() {
        *per_user.entry(r.user_id).or_default() += 1;
    }
    assert_eq!(per_user.len(), USERS, "everyone received it");
    assert!(per_user.values().all(|&n| n == 1), "and exactly once");
}
