//! Rate limits as data: at most `max` calls in any window, kept by a sliding-window limiter
//! whose time is passed in (milliseconds), so it is deterministic in tests and follows an
//! injected clock. Used by the Zoom and LINE clients for the upstreams' documented limits.
//!
//! Where the limits are kept is behind two traits, so that the clients know nothing of our
//! database: [`RateBudget`] (per-second limits) and [`DailyCounter`] (daily allowances). The
//! clients keep both in their process by default; the app gives them implementations kept in
//! the database, so that every process sharing it stays under one limit ([`SharedPlan`] is the
//! arithmetic of that shared schedule) and daily counts survive a restart.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

/// A limit: at most `max` calls in any `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub max: u32,
    pub window_ms: u64,
}

/// A sliding-window limiter: at most `rate.max` admissions in any `rate.window_ms`. Time is
/// passed in (milliseconds), so it is deterministic in tests and follows an injected clock.
#[derive(Debug, Clone)]
pub struct Window {
    rate: Rate,
    admitted: VecDeque<u64>,
}

impl Window {
    pub fn new(rate: Rate) -> Window {
        Window { rate, admitted: VecDeque::with_capacity(rate.max as usize) }
    }

    /// Admit now, or say how many milliseconds to wait before asking again.
    pub fn try_acquire(&mut self, now_ms: u64) -> Result<(), u64> {
        while let Some(&oldest) = self.admitted.front() {
            if now_ms.saturating_sub(oldest) >= self.rate.window_ms {
                self.admitted.pop_front();
            } else {
                break;
            }
        }
        if (self.admitted.len() as u32) < self.rate.max.max(1) {
            self.admitted.push_back(now_ms);
            Ok(())
        } else {
            let oldest = *self.admitted.front().expect("full window is not empty");
            Err(oldest + self.rate.window_ms - now_ms)
        }
    }
}
/// Even spacing (GCRA): one admission per `window / max`, with a small burst allowance. Used
/// with a [`Window`], so that a limit is not reached in one burst at the start of each window
/// (a burst whose requests then arrive compressed, out of order, over the upstream's window).
/// Time in microseconds.
#[derive(Debug, Clone)]
pub struct Pacer {
    interval_us: u64,
    tolerance_us: u64,
    tat_us: u64,
}

impl Pacer {
    pub fn new(rate: Rate, burst: u32) -> Pacer {
        let interval_us = rate.window_ms * 1000 / u64::from(rate.max.max(1));
        Pacer { interval_us, tolerance_us: interval_us * u64::from(burst), tat_us: 0 }
    }

    /// Microseconds to wait before an admission would conform (0: now).
    pub fn wait_us(&self, now_us: u64) -> u64 {
        let tat = self.tat_us.max(now_us);
        (tat - now_us).saturating_sub(self.tolerance_us)
    }

    /// Record an admission at `now_us`.
    pub fn commit(&mut self, now_us: u64) {
        self.tat_us = self.tat_us.max(now_us) + self.interval_us;
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A budget could not be consulted (its database did not answer): nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limits unavailable: {0}")]
pub struct BudgetError(pub String);

/// Where an upstream's per-second limits are kept.
pub trait RateBudget: Send + Sync {
    /// Returns once one call under `key` may be sent without exceeding `rate` (whose window
    /// already includes the caller's margin for travel time).
    fn acquire<'a>(&'a self, key: &'a str, rate: Rate) -> BoxFuture<'a, Result<(), BudgetError>>;
}

/// Where daily allowances are counted. A use is counted before the call it allows, so a call
/// that fails afterwards still counts (as the upstream may have counted it too).
pub trait DailyCounter: Send + Sync {
    /// Count one use of `key` on `day` unless `limit` uses are already counted: `Ok(true)`
    /// when counted, `Ok(false)` when the allowance is spent.
    fn charge<'a>(&'a self, key: &'a str, day: i64, limit: u32) -> BoxFuture<'a, Result<bool, BudgetError>>;

    /// Uses of `key` counted on `day`.
    fn used<'a>(&'a self, key: &'a str, day: i64) -> BoxFuture<'a, Result<u32, BudgetError>>;
}

/// Daily counts kept in this process (the clients' default): forgotten on restart.
#[derive(Debug, Default)]
pub struct LocalDaily {
    counts: Mutex<(i64, HashMap<String, u32>)>,
}

impl LocalDaily {
    fn with_day<T>(&self, day: i64, f: impl FnOnce(&mut HashMap<String, u32>) -> T) -> T {
        let mut g = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if g.0 != day {
            *g = (day, HashMap::new());
        }
        f(&mut g.1)
    }
}

impl DailyCounter for LocalDaily {
    fn charge<'a>(&'a self, key: &'a str, day: i64, limit: u32) -> BoxFuture<'a, Result<bool, BudgetError>> {
        let counted = self.with_day(day, |m| {
            let n = m.entry(key.to_string()).or_default();
            if *n >= limit {
                return false;
            }
            *n += 1;
            true
        });
        Box::pin(std::future::ready(Ok(counted)))
    }

    fn used<'a>(&'a self, key: &'a str, day: i64) -> BoxFuture<'a, Result<u32, BudgetError>> {
        let n = self.with_day(day, |m| m.get(key).copied().unwrap_or(0));
        Box::pin(std::future::ready(Ok(n)))
    }
}

/// How long after the first slot of its reservation a unit may still be handed out by default.
pub const SHARED_LATENESS_MS: u64 = 50;

/// A rate shared by several processes through one schedule of slots kept in a database (a
/// GCRA whose state is the next free slot). A process reserves up to `chunk` consecutive slots
/// in one round trip ([`reserve_slots`]) and hands the units out from the first slot's instant
/// until `lateness` after it; what is left then lapses. Every unit is handed out no earlier
/// than its chunk's first slot and at most `lateness` after it, so the units handed out in any
/// window of `rate.window_ms` (which includes the client's margin for travel time) belong to
/// slots within `window + lateness + (chunk - 1) × interval`. Slots being `interval` apart,
/// those are fewer than `chunk + (window + lateness) / interval` units, which the interval
/// below keeps at `rate.max` or under, however many processes share the schedule and whenever
/// they ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedPlan {
    /// Units reserved per round trip at most.
    pub chunk: u32,
    /// Distance between consecutive slots, microseconds.
    pub interval_us: u64,
    /// How long after its first slot a reservation's units may be handed out, microseconds.
    pub lateness_us: u64,
    /// A schedule further ahead of now than this can only come from a clock that stepped
    /// back; it restarts at now instead of stalling every process.
    pub horizon_us: u64,
}

impl SharedPlan {
    pub fn new(rate: Rate) -> SharedPlan {
        SharedPlan::with_lateness(rate, SHARED_LATENESS_MS)
    }

    pub fn with_lateness(rate: Rate, lateness_ms: u64) -> SharedPlan {
        let max = rate.max.max(1);
        // About a hundredth of a second's worth per round trip, at most 20 (LINE: 2,000/s).
        let chunk = (max / 100).clamp(1, 20);
        let span_us = (rate.window_ms + lateness_ms) * 1000;
        let interval_us = span_us.div_ceil(u64::from(max + 1 - chunk)).max(1);
        let horizon_us = (256 * u64::from(chunk) * interval_us).max(60_000_000);
        SharedPlan { chunk, interval_us, lateness_us: lateness_ms * 1000, horizon_us }
    }
}

/// One reservation of `units` slots on a schedule whose next free slot is `tat_us`, at `now_us`
/// (both on the schedule's clock): returns the first reserved slot and the new next free slot.
/// The store runs the same arithmetic in one atomic statement.
pub fn reserve_slots(tat_us: i64, now_us: i64, units: u32, interval_us: u64, horizon_us: u64) -> (i64, i64) {
    let tat = if tat_us > now_us.saturating_add(horizon_us as i64) { now_us } else { tat_us };
    let first = tat.max(now_us);
    (first, first + i64::from(units) * interval_us as i64)
}

#[cfg(test)]
mod shared_tests {
    use super::*;

    /// A deterministic stream of draws in [0, n).
    struct Draws(u64);

    impl Draws {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            if n == 0 { 0 } else { self.0 % n }
        }
    }

    /// `processes` processes, each with requests always waiting, take units from one shared
    /// schedule as the app does: a round trip to the database of up to `rtt_us` (split
    /// unevenly between the two legs), a wait for the first slot, hand-outs up to
    /// `handout_us` apart, and arrivals up to `travel_us` after the hand-out. Returns the
    /// arrival instants (µs), sorted.
    fn simulate(plan: SharedPlan, processes: usize, seconds: u64, rtt_us: u64, travel_us: u64, seed: u64) -> Vec<u64> {
        let handout_us = 300;
        let mut d = Draws(seed);
        let mut tat: i64 = 0;
        // Per process: when its next round trip leaves, and when it reaches the database
        // (which applies reservations in the order they reach it).
        let mut next: Vec<(u64, u64)> = (0..processes as u64).map(|p| (p * 137, p * 137 + d.below(rtt_us))).collect();
        let mut arrivals = Vec::new();
        let end = seconds * 1_000_000;
        loop {
            let (p, &(sent, at_db)) = next.iter().enumerate().min_by_key(|(_, t)| t.1).expect("processes");
            if at_db >= end {
                break;
            }
            let back = d.below(rtt_us + 1 - (at_db - sent));
            let units = plan.chunk - d.below(u64::from(plan.chunk).min(3)) as u32;
            let (first, next_free) = reserve_slots(tat, at_db as i64, units, plan.interval_us, plan.horizon_us);
            tat = next_free;
            let got = at_db + back;
            // What the process knows: when it asked, when it got the answer, and the wait the
            // database computed.
            let wait = first - at_db as i64;
            let from = got as i64 + wait.max(0);
            let until = sent as i64 + wait + plan.lateness_us as i64;
            let mut t = from;
            for _ in 0..units {
                if t > until {
                    break;
                }
                arrivals.push(t as u64 + d.below(travel_us + 1));
                t += d.below(handout_us) as i64;
            }
            let again = t.max(got as i64) as u64;
            next[p] = (again, again + d.below(rtt_us));
        }
        arrivals.sort_unstable();
        arrivals
    }

    /// The most arrivals in any sliding second, as the upstream counts them.
    fn peak_per_second(arrivals: &[u64]) -> usize {
        let mut peak = 0;
        let mut lo = 0;
        for hi in 0..arrivals.len() {
            while arrivals[hi] - arrivals[lo] >= 1_000_000 {
                lo += 1;
            }
            peak = peak.max(hi - lo + 1);
        }
        peak
    }

    #[test]
    fn plans_for_the_documented_limits() {
        let line = SharedPlan::new(Rate { max: 2000, window_ms: 1050 });
        assert_eq!(line.chunk, 20);
        assert_eq!(line.interval_us, 556);
        let zoom = SharedPlan::new(Rate { max: 30, window_ms: 1050 });
        assert_eq!((zoom.chunk, zoom.interval_us), (1, 36_667));
        let hourly = SharedPlan::new(Rate { max: 60, window_ms: 3_600_050 });
        assert_eq!(hourly.interval_us, 60_001_667);
        assert!(hourly.horizon_us >= 256 * hourly.interval_us, "waiting processes never look like a clock jump");
    }

    #[test]
    fn a_schedule_restarts_at_now_after_a_clock_stepped_back() {
        assert_eq!(reserve_slots(0, 1_000, 3, 10, 1_000_000), (1_000, 1_030), "idle: from now");
        assert_eq!(reserve_slots(5_000, 1_000, 3, 10, 1_000_000), (5_000, 5_030), "busy: after the others");
        assert_eq!(reserve_slots(9_000_000, 1_000, 1, 10, 1_000_000), (1_000, 1_010), "beyond the horizon");
    }

    /// Four processes sharing LINE's 2,000/s (push) and 200/s (multicast) and Zoom's 30/s
    /// through one schedule, with database round trips of up to 20 ms (5 ms for multicast) and
    /// travel times varying by up to the clients' 50 ms margin: no second ever holds more than
    /// the limit, and together they still get at least 0.85 of it.
    #[test]
    fn processes_sharing_a_schedule_stay_under_the_limit() {
        for (max, seconds, rtt_us) in [(2000, 10, 20_000), (30, 60, 20_000), (200, 20, 5_000)] {
            let plan = SharedPlan::new(Rate { max, window_ms: 1000 + 50 });
            for seed in 1..=3 {
                let arrivals = simulate(plan, 4, seconds, rtt_us, 50_000, seed);
                let peak = peak_per_second(&arrivals);
                assert!(peak <= max as usize, "limit {max}, seed {seed}: {peak} in one second");
                let per_second = arrivals.len() as f64 / seconds as f64;
                assert!(per_second >= 0.85 * f64::from(max), "limit {max}, seed {seed}: only {per_second:.1}/s");
            }
        }
    }

    /// The same simulation catches a plan that forgets the lateness and the chunk: the check
    /// above has teeth.
    #[test]
    fn a_plan_without_lateness_and_chunk_is_caught() {
        let naive = SharedPlan { chunk: 20, interval_us: 500, lateness_us: 50_000, horizon_us: 60_000_000 };
        let arrivals = simulate(naive, 4, 10, 20_000, 50_000, 1);
        assert!(peak_per_second(&arrivals) > 2000);
    }

    #[test]
    fn local_daily_counts_reset_with_the_day() {
        let d = LocalDaily::default();
        let charge = |key: &'static str, day| {
            let f = d.charge(key, day, 2);
            poll_ready(f)
        };
        assert_eq!(charge("a", 1), Ok(true));
        assert_eq!(charge("a", 1), Ok(true));
        assert_eq!(charge("a", 1), Ok(false), "the third of two is refused");
        assert_eq!(charge("b", 1), Ok(true), "keys are separate");
        assert_eq!(poll_ready(d.used("a", 1)), Ok(2));
        assert_eq!(charge("a", 2), Ok(true), "a new day starts again");
        assert_eq!(poll_ready(d.used("a", 2)), Ok(1));
    }

    /// The local counter's futures are ready at once.
    fn poll_ready<T>(mut f: BoxFuture<'_, T>) -> T {
        let waker = std::task::Waker::noop();
        match f.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("a local count does not wait"),
        }
    }
}

#[cfg(test)]
mod pacer_tests {
    use super::*;

    /// Driven as fast as it allows, a pacer with a window keeps every 1-second window at the
    /// limit or under, and spreads admissions: no 100 ms holds more than a tenth plus the burst.
    #[test]
    fn paced_admissions_are_spread_and_within_the_limit() {
        let rate = Rate { max: 2000, window_ms: 1000 };
        let mut pacer = Pacer::new(rate, 20);
        let mut window = Window::new(rate);
        let mut now_us = 0u64;
        let mut times = Vec::new();
        while now_us < 3_000_000 {
            let wait = pacer.wait_us(now_us);
            if wait > 0 {
                now_us += wait;
                continue;
            }
            match window.try_acquire(now_us / 1000) {
                Ok(()) => {
                    pacer.commit(now_us);
                    times.push(now_us);
                }
                Err(ms) => now_us += ms * 1000,
            }
        }
        for (i, &t) in times.iter().enumerate() {
            let in_second = times[i..].iter().take_while(|&&u| u < t + 1_000_000).count();
            assert!(in_second <= 2000);
            let in_tenth = times[i..].iter().take_while(|&&u| u < t + 100_000).count();
            assert!(in_tenth <= 200 + 21, "{in_tenth} in 100 ms after {t} µs");
        }
        assert!(times.len() >= 5900, "{} admissions in 3 s", times.len());
    }
}
