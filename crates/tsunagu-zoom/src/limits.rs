//! Zoom's rate limits by design (NOTES §1.4, §7): each call has a label, each account plan a
//! rate per label, and a [`Window`] limiter keeps a caller under the rate in every window,
//! so the per-second 429 is never the normal way of finding the limit. [`LocalLimits`] keeps
//! the windows in this process (the client's default); the app can hand the client a
//! [`RateBudget`] shared by every process on its database instead.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use tsunagu_core::rate::{BoxFuture, BudgetError, DailyCounter, LocalDaily, Rate, RateBudget, Window};

/// Zoom's rate-limit labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Label {
    Light,
    Medium,
    Heavy,
    ResourceIntensive,
}

/// The Zoom account plan whose figures apply (configurable per organizer; Pro by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZoomPlan {
    Free,
    #[default]
    Pro,
    /// Business, Education, Enterprise, Partner.
    BusinessPlus,
}

const fn per_second(max: u32) -> Rate {
    Rate { max, window_ms: 1000 }
}

const fn per_minute(max: u32) -> Rate {
    Rate { max, window_ms: 60_000 }
}

impl ZoomPlan {
    pub fn parse(s: &str) -> Option<ZoomPlan> {
        match s.trim().to_ascii_lowercase().as_str() {
            "free" | "basic" => Some(ZoomPlan::Free),
            "pro" => Some(ZoomPlan::Pro),
            "business" | "business_plus" | "education" | "enterprise" | "partner" => Some(ZoomPlan::BusinessPlus),
            _ => None,
        }
    }

    /// Zoom's documented figures (NOTES §7).
    pub fn rate(self, label: Label) -> Rate {
        match (self, label) {
            (ZoomPlan::Free, Label::Light) => per_second(4),
            (ZoomPlan::Free, Label::Medium) => per_second(2),
            (ZoomPlan::Free, Label::Heavy) => per_second(1),
            (ZoomPlan::Pro, Label::Light) => per_second(30),
            (ZoomPlan::Pro, Label::Medium) => per_second(20),
            (ZoomPlan::Pro, Label::Heavy) => per_second(10),
            (ZoomPlan::BusinessPlus, Label::Light) => per_second(80),
            (ZoomPlan::BusinessPlus, Label::Medium) => per_second(60),
            (ZoomPlan::BusinessPlus, Label::Heavy) => per_second(40),
            (ZoomPlan::Free | ZoomPlan::Pro, Label::ResourceIntensive) => per_minute(10),
            (ZoomPlan::BusinessPlus, Label::ResourceIntensive) => per_minute(20),
        }
    }
}

/// The calls Tsunagu makes, with their labels (NOTES §1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    GetUser,
    CreateMeeting,
    GetMeeting,
    UpdateMeeting,
    DeleteMeeting,
    AddMeetingRegistrant,
    ListMeetingRegistrants,
    MeetingRegistrantStatus,
    DeleteMeetingRegistrant,
    MeetingRegistrationQuestions,
    CreateWebinar,
    GetWebinar,
    UpdateWebinar,
    DeleteWebinar,
    AddWebinarRegistrant,
    ListWebinarRegistrants,
    WebinarRegistrantStatus,
    DeleteWebinarRegistrant,
    WebinarRegistrationQuestions,
}

impl Call {
    pub fn label(self) -> Label {
        use Call::*;
        match self {
            CreateMeeting
            | ListMeetingRegistrants
            | MeetingRegistrantStatus
            | ListWebinarRegistrants
            | WebinarRegistrantStatus => Label::Medium,
            GetUser
            | GetMeeting
            | UpdateMeeting
            | DeleteMeeting
            | AddMeetingRegistrant
            | DeleteMeetingRegistrant
            | MeetingRegistrationQuestions
            | CreateWebinar
            | GetWebinar
            | UpdateWebinar
            | DeleteWebinar
            | AddWebinarRegistrant
            | DeleteWebinarRegistrant
            | WebinarRegistrationQuestions => Label::Light,
        }
    }

    /// Counted against the 100 creates+updates per host per day.
    pub fn counts_toward_host_daily(self) -> bool {
        matches!(self, Call::CreateMeeting | Call::UpdateMeeting | Call::CreateWebinar | Call::UpdateWebinar)
    }
}

/// Per-second limits kept in this process: one sliding [`Window`] per key.
pub struct LocalLimits {
    epoch: Instant,
    windows: Mutex<HashMap<String, (Rate, Window)>>,
}

impl Default for LocalLimits {
    fn default() -> Self {
        LocalLimits { epoch: Instant::now(), windows: Mutex::default() }
    }
}

impl LocalLimits {
    /// Admit now, or say how many milliseconds to wait.
    fn try_acquire(&self, key: &str, rate: Rate) -> Result<(), u64> {
        let now = self.epoch.elapsed().as_millis() as u64;
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if !windows.contains_key(key) {
            windows.insert(key.to_string(), (rate, Window::new(rate)));
        }
        let (r, w) = windows.get_mut(key).expect("inserted above");
        if *r != rate {
            *r = rate;
            *w = Window::new(rate);
        }
        w.try_acquire(now)
    }
}

impl RateBudget for LocalLimits {
    fn acquire<'a>(&'a self, key: &'a str, rate: Rate) -> BoxFuture<'a, Result<(), BudgetError>> {
        Box::pin(async move {
            loop {
                match self.try_acquire(key, rate) {
                    Ok(()) => return Ok(()),
                    Err(wait) => tokio::time::sleep(Duration::from_millis(wait.max(1))).await,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_figures() {
        assert_eq!(ZoomPlan::default().rate(Label::Light), per_second(30));
        assert_eq!(ZoomPlan::Free.rate(Label::Medium), per_second(2));
        assert_eq!(ZoomPlan::BusinessPlus.rate(Label::Heavy), per_second(40));
        assert_eq!(ZoomPlan::Pro.rate(Label::ResourceIntensive), per_minute(10));
        assert_eq!(ZoomPlan::parse("Enterprise"), Some(ZoomPlan::BusinessPlus));
        assert_eq!(Call::AddWebinarRegistrant.label(), Label::Light);
        assert_eq!(Call::CreateMeeting.label(), Label::Medium);
        assert_eq!(Call::CreateWebinar.label(), Label::Light);
        assert!(Call::UpdateWebinar.counts_toward_host_daily() && !Call::GetMeeting.counts_toward_host_daily());
    }

    /// Drive the limiter as fast as it allows for 10 simulated seconds: every 1-second window
    /// holds at most the limit, and throughput is the limit.
    #[test]
    fn never_more_than_the_limit_in_any_window() {
        let mut w = Window::new(per_second(30));
        let mut now = 0u64;
        let mut times = Vec::new();
        while now < 10_000 {
            match w.try_acquire(now) {
                Ok(()) => times.push(now),
                Err(wait) => {
                    assert!(wait > 0);
                    now += wait;
                }
            }
        }
        for (i, &t) in times.iter().enumerate() {
            let in_window = times[i..].iter().take_while(|&&u| u < t + 1000).count();
            assert!(in_window <= 30, "{in_window} calls in the second after {t} ms");
        }
        assert_eq!(times.len(), 300, "full use of the allowance");
    }
}
