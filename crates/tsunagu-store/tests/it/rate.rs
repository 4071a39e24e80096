//! Upstream limits kept in the database: rate budgets hand out each slot once, in order, to
//! whichever process asks; daily allowances never count past their limit, even when many
//! processes charge at once.

use tsunagu_store::{Store, rate};

use crate::harness::conformance;

conformance!(
    rate_budgets_hand_out_consecutive_slots,
    rate_budget_reservations_never_overlap,
    daily_allowances_count_to_the_limit_and_purge,
    daily_allowances_hold_under_concurrency,
);

/// Slots this far apart keep a schedule far ahead of the clock for the whole test, so that the
/// expected slots do not depend on how fast the test runs.
const HOUR_US: u64 = 3_600_000_000;
const HORIZON_US: u64 = 1_000 * HOUR_US;

async fn rate_budgets_hand_out_consecutive_slots(store: Store) {
    let b = store.backend();
    let mut c = store.conn().await.unwrap();
    let first = rate::reserve(&mut c, b, "line:1:Push", 3, HOUR_US, HORIZON_US).await.unwrap();
    assert!(first.wait_us() <= 0, "an idle budget starts now: {first:?}");
    let second = rate::reserve(&mut c, b, "line:1:Push", 2, HOUR_US, HORIZON_US).await.unwrap();
    assert_eq!(second.first_us, first.first_us + 3 * HOUR_US as i64, "right after the three slots taken");
    assert!(second.wait_us() > 2 * HOUR_US as i64, "and in the future: {second:?}");
    let other = rate::reserve(&mut c, b, "line:2:Push", 1, HOUR_US, HORIZON_US).await.unwrap();
    assert!(other.wait_us() <= 0, "another key has a schedule of its own: {other:?}");
    // Five hours ahead is beyond a one-hour horizon: a clock that stepped back restarts it.
    let restarted = rate::reserve(&mut c, b, "line:1:Push", 1, HOUR_US, HOUR_US).await.unwrap();
    assert!(restarted.wait_us() <= 0 && restarted.first_us < second.first_us, "{restarted:?}");
    let next = rate::reserve(&mut c, b, "line:1:Push", 1, HOUR_US, HORIZON_US).await.unwrap();
    assert_eq!(next.first_us, restarted.first_us + HOUR_US as i64);
}

async fn rate_budget_reservations_never_overlap(store: Store) {
    let mut handles = Vec::new();
    for t in 0..8u32 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..20u32 {
                let units = 1 + (t + i) % 3;
                let mut c = store.conn().await.unwrap();
                let r =
                    rate::reserve(&mut c, store.backend(), "zoom:7:Light", units, HOUR_US, HORIZON_US).await.unwrap();
                got.push((r.first_us, units));
            }
            got
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all.sort();
    assert_eq!(all.len(), 160);
    // Every reservation starts where the one before it ended: no slot twice, none skipped.
    for pair in all.windows(2) {
        let ((a, units), (b, _)) = (pair[0], pair[1]);
        assert_eq!(b, a + i64::from(units) * HOUR_US as i64, "{pair:?}");
    }
}

async fn daily_allowances_count_to_the_limit_and_purge(store: Store) {
    let mut c = store.conn().await.unwrap();
    let key = "zoom:7:add:taro@example.com";
    for n in 1..=3 {
        assert_eq!(rate::charge_daily(&mut c, key, 20_000, 3).await.unwrap(), Some(n));
    }
    assert_eq!(rate::charge_daily(&mut c, key, 20_000, 3).await.unwrap(), None, "the fourth is refused");
    assert_eq!(rate::charge_daily(&mut c, key, 20_000, 3).await.unwrap(), None);
    assert_eq!(rate::used_daily(&mut c, key, 20_000).await.unwrap(), 3, "refusals are not counted");
    assert_eq!(rate::charge_daily(&mut c, key, 20_001, 3).await.unwrap(), Some(1), "the next day starts again");
    assert_eq!(rate::charge_daily(&mut c, "zoom:8:add:taro@example.com", 20_000, 3).await.unwrap(), Some(1));
    assert_eq!(rate::charge_daily(&mut c, "zoom:7:host:owner@example.com", 20_000, 0).await.unwrap(), None);
    assert_eq!(rate::used_daily(&mut c, "zoom:7:host:owner@example.com", 20_000).await.unwrap(), 0);
    assert_eq!(rate::purge_daily(&mut c, 20_001).await.unwrap(), 2, "both counts of the old day");
    assert_eq!(rate::used_daily(&mut c, key, 20_000).await.unwrap(), 0);
    assert_eq!(rate::used_daily(&mut c, key, 20_001).await.unwrap(), 1, "today's count is kept");
}

async fn daily_allowances_hold_under_concurrency(store: Store) {
    let mut handles = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut c = store.conn().await.unwrap();
            rate::charge_daily(&mut c, "zoom:7:host:owner@example.com", 20_000, 5).await.unwrap()
        }));
    }
    let mut counted = Vec::new();
    for h in handles {
        counted.extend(h.await.unwrap());
    }
    counted.sort();
    assert_eq!(counted, vec![1, 2, 3, 4, 5], "five of sixteen, each count once");
    let mut c = store.read().await.unwrap();
    assert_eq!(rate::used_daily(&mut c, "zoom:7:host:owner@example.com", 20_000).await.unwrap(), 5);
}
