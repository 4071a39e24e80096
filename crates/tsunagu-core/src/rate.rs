//! Rate limits as data: at most `max` calls in any window, kept by a sliding-window limiter
//! whose time is passed in (milliseconds), so it is deterministic in tests and follows an
//! injected clock. Used by the Zoom and LINE clients for the upstreams' documented limits.

use std::collections::VecDeque;

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
