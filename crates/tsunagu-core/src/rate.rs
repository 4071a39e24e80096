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
