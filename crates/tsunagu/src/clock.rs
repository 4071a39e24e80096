//! Time comes from an injected clock so tests (and later the sandboxes) can move it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch, UTC.
    fn now_ms(&self) -> i64;
}

pub type SharedClock = Arc<dyn Clock>;

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }
}

/// A clock that follows the system clock plus an offset that tests can advance.
#[derive(Default)]
pub struct OffsetClock {
    offset_ms: AtomicI64,
}

impl OffsetClock {
    pub fn advance(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms() + self.offset_ms.load(Ordering::SeqCst)
    }
}

/// Format an instant for people: `2026年11月23日 20:31` in the given IANA zone.
pub fn format_local(ms: i64, time_zone: &str) -> String {
    let Ok(ts) = jiff::Timestamp::from_millisecond(ms) else { return "-".into() };
    let tz = jiff::tz::TimeZone::get(time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    ts.to_zoned(tz).strftime("%Y年%m月%d日 %H:%M").to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_in_tokyo() {
        // 2026-11-23T11:31:00Z is 20:31 in Tokyo.
        assert_eq!(super::format_local(1_795_433_460_000, "Asia/Tokyo"), "2026年11月23日 20:31");
    }
}
