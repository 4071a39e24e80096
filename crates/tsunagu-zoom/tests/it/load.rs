//! 500 registrants through the client while the sandbox injects 20 % faults (429, 500 before
//! and after processing, timeouts after processing). Each person must end up registered
//! exactly once, the per-second limit must never be exceeded, and nothing may be left undone.
//! Failed adds are retried the way a job would be: later, with `maybe_added_before`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tsunagu_sandbox::zoom::Faults;
use tsunagu_zoom::Registration;
use tsunagu_zoom::error::Retry;
use tsunagu_zoom::model::EventRef;

use crate::support::*;

const PEOPLE: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_registrants_with_twenty_percent_faults() {
    let z = Zoom::start_with(|c| c.timeout = Duration::from_millis(700)).await;
    let m = z.client.create_meeting(&z.org, OWNER, &meeting_body("500人セミナー", true)).await.unwrap();
    let event = EventRef::Meeting(m.id);
    z.sb.set_faults(Faults {
        rate_429: 0.07,
        rate_500: 0.07,
        rate_timeout: 0.06,
        timeout_hold: Duration::from_millis(1500),
        seed: 20261125,
    });
    let (sb, client, org) = (z.sb.clone(), z.client.clone(), Arc::new(z.org.clone()));
    let mut done: HashMap<usize, Registration> = HashMap::new();
    let mut attempted: HashSet<usize> = HashSet::new();
    let mut posts_before_midnights = 0u32;
    for round in 0..12 {
        let pending: Vec<usize> = (0..PEOPLE).filter(|i| !done.contains_key(i)).collect();
        if pending.is_empty() {
            break;
        }
        let gate = Arc::new(tokio::sync::Semaphore::new(24));
        let mut tasks = Vec::new();
        for i in pending {
            let (client, org, gate) = (client.clone(), org.clone(), gate.clone());
            let before = attempted.contains(&i);
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.unwrap();
                (i, client.add_registrant(&org, event, &person(i), before).await)
            }));
        }
        let mut deferred_to_tomorrow = false;
        for t in tasks {
            let (i, result) = t.await.unwrap();
            attempted.insert(i);
            match result {
                Ok(r) => {
                    done.insert(i, r);
                }
                Err(e) => match e.retry() {
                    Retry::NotBefore { .. } => deferred_to_tomorrow = true,
                    Retry::No => panic!("person {i}: a fault was taken for a refusal: {e:?}"),
                    _ => {}
                },
            }
        }
        if deferred_to_tomorrow {
            posts_before_midnights += (0..PEOPLE).map(|i| sb.add_calls_for(&person(i).email)).sum::<u32>();
            // Both the client's counters and the sandbox's roll over.
            z.next_day();
            eprintln!("round {round}: some adds wait for 00:00 UTC");
        }
    }
    sb.set_faults(Faults::default());
    assert_eq!(done.len(), PEOPLE, "nothing is left undone");

    let stats = sb.stats();
    assert!(stats.injected_429 + stats.injected_500_before + stats.injected_500_after + stats.injected_timeouts > 100);
    assert!(stats.injected_500_after > 0 && stats.injected_timeouts > 0, "ambiguous outcomes were exercised");
    assert_eq!(stats.qps_429, 0, "the client never exceeded the per-second limit");
    for ((account, label), max) in &stats.max_in_any_second {
        let limit = match label.as_str() {
            "Light" => 30,
            "Medium" => 20,
            _ => 10,
        };
        assert!(*max <= limit, "{account} {label}: {max} requests in one second (limit {limit})");
    }

    // Exactly once: one registrant per person, and the client holds Zoom's own ids and URLs.
    let registrants = sb.registrants(m.id);
    assert_eq!(registrants.len(), PEOPLE);
    let by_email: HashMap<String, _> = registrants.iter().map(|r| (r.email.to_lowercase(), r)).collect();
    assert_eq!(by_email.len(), PEOPLE, "no one twice");
    for (i, r) in &done {
        let z = by_email[&person(*i).email];
        assert_eq!(r.registrant_id, z.id, "person {i}");
        assert_eq!(r.join_url.as_deref(), Some(z.join_url.as_str()), "person {i}");
    }
    // An add was repeated only after a failure that provably did not register the person
    // (a 500 answered before processing); never after one that did.
    let posts = posts_before_midnights + (0..PEOPLE).map(|i| sb.add_calls_for(&person(i).email)).sum::<u32>();
    assert!(posts >= PEOPLE as u32);
    assert!(
        u64::from(posts - PEOPLE as u32) <= stats.injected_500_before,
        "{posts} adds for {PEOPLE} people with {} refused-before-processing faults",
        stats.injected_500_before
    );
    z.assert_contract();
}
