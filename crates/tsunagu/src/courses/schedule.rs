//! When each step of a course falls due for one subscription, and in which order (ARCHITECTURE
//! "Step delivery"). Pure: the dispatcher, the console's preview and the delivery log all read
//! the schedule from here, so they cannot disagree.
//!
//! - 「購読開始直後」 falls due at the subscription's start.
//! - 「時刻指定」 N 日後 HH:MM falls due on the start's local date (day 0) plus N days, at HH:MM
//!   in the course's time zone. If that instant is already past when the subscription starts,
//!   the step falls due at the start, after the steps before it.
//! - Steps are delivered in the order of their timing (immediate first, then by day and time),
//!   then 通目, then id. Steps falling due at the same instant go out together.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;

/// 配信タイミング.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timing {
    /// 購読開始直後.
    Immediate,
    /// 時刻指定: `day` days after the start's local date, at `minute` minutes past midnight.
    At { day: u32, minute: u32 },
}

impl Timing {
    /// The latest day the console accepts (about ten years).
    pub const MAX_DAY: u32 = 3650;

    /// `N 日後の HH:MM`, checked.
    pub fn at(day: u32, hour: u32, minute: u32) -> Option<Timing> {
        (day <= Self::MAX_DAY && hour < 24 && minute < 60).then_some(Timing::At { day, minute: hour * 60 + minute })
    }
}

/// A step as the schedule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub id: i64,
    pub timing: Timing,
    /// 通目: the order among steps with the same timing.
    pub order: i32,
}

impl Step {
    /// The delivery order of steps: timing, then 通目, then id.
    pub fn sort_key(&self) -> (Timing, i32, i64) {
        (self.timing, self.order, self.id)
    }
}

/// The instant (ms since the epoch) `timing` falls due for a subscription that started at
/// `start_ms`, in the course's time zone `tz`. Never before the start.
pub fn due_at(timing: Timing, start_ms: i64, tz: &TimeZone) -> i64 {
    let Timing::At { day, minute } = timing else { return start_ms };
    let Ok(start) = jiff::Timestamp::from_millisecond(start_ms) else { return start_ms };
    let date: Date = start.to_zoned(tz.clone()).date();
    let Ok(date) = date.checked_add(jiff::Span::new().days(i64::from(day))) else { return start_ms };
    let Ok(time) = Time::new((minute / 60) as i8, (minute % 60) as i8, 0, 0) else { return start_ms };
    // A local time skipped or repeated by a daylight-saving change resolves as most calendars
    // do: the later instant for a gap, the earlier for a fold.
    let due = tz.to_ambiguous_zoned(date.to_datetime(time)).compatible().map(|z| z.timestamp().as_millisecond());
    due.unwrap_or(start_ms).max(start_ms)
}

/// One delivery of the schedule: the steps due at one instant, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub at: i64,
    pub steps: Vec<i64>,
}

/// The whole schedule of a subscription that started at `start_ms`: each instant with the steps
/// due then, in delivery order. A step placed earlier in the order never goes out later than
/// one placed after it (a passed time goes out with the start, after the steps before it).
pub fn plan(steps: &[Step], start_ms: i64, tz: &TimeZone) -> Vec<Slot> {
    let mut ordered: Vec<&Step> = steps.iter().collect();
    ordered.sort_by_key(|s| s.sort_key());
    let mut slots: Vec<Slot> = Vec::new();
    for s in ordered {
        // A step due no later than the last slot joins it, so nothing goes out before a step
        // ahead of it in the order, even where a daylight-saving gap makes a later local time
        // an earlier instant.
        let at = due_at(s.timing, start_ms, tz);
        match slots.last_mut() {
            Some(last) if last.at >= at => last.steps.push(s.id),
            _ => slots.push(Slot { at, steps: vec![s.id] }),
        }
    }
    slots
}

/// What a subscription should do now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Due {
    /// Steps to send now, in order.
    pub send: Vec<i64>,
    /// Steps that fell due while the student had blocked the account: logged, never sent late.
    pub skip: Vec<i64>,
    /// When the next step not yet handled falls due, if any.
    pub next_at: Option<i64>,
}

/// The steps of a subscription that are due at `now` and not yet `handled` (sent or skipped).
/// `blocked_until`: when the student unblocked after a block (the subscription resumed then);
/// steps that fell due before it and were not handled are skipped rather than sent in a burst.
pub fn due(
    steps: &[Step],
    start_ms: i64,
    tz: &TimeZone,
    handled: &dyn Fn(i64) -> bool,
    resumed_at: Option<i64>,
    now: i64,
) -> Due {
    let mut out = Due::default();
    for slot in plan(steps, start_ms, tz) {
        let pending: Vec<i64> = slot.steps.iter().copied().filter(|id| !handled(*id)).collect();
        if pending.is_empty() {
            continue;
        }
        if slot.at > now {
            out.next_at = Some(slot.at);
            break;
        }
        match resumed_at {
            Some(r) if slot.at < r => out.skip.extend(pending),
            _ => out.send.extend(pending),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokyo() -> TimeZone {
        TimeZone::get("Asia/Tokyo").unwrap()
    }

    /// 2026-12-02 15:00 in Tokyo (06:00Z).
    fn start() -> i64 {
        jiff::Timestamp::from_second(1_796_191_200).unwrap().as_millisecond()
    }

    const H: i64 = 3_600_000;

    fn step(id: i64, timing: Timing, order: i32) -> Step {
        Step { id, timing, order }
    }

    #[test]
    fn the_start_is_checked() {
        assert_eq!(
            jiff::Timestamp::from_millisecond(start()).unwrap().to_zoned(tokyo()).strftime("%F %R").to_string(),
            "2026-12-02 15:00"
        );
    }

    #[test]
    fn timed_steps_fall_on_local_days_and_passed_times_go_at_once() {
        let tz = tokyo();
        // Day 0 at 20:00: five hours after a 15:00 start.
        assert_eq!(due_at(Timing::at(0, 20, 0).unwrap(), start(), &tz), start() + 5 * H);
        // Day 0 at 10:00 has passed: at once.
        assert_eq!(due_at(Timing::at(0, 10, 0).unwrap(), start(), &tz), start());
        // Day 1 at 09:30: the next local morning (18.5 hours later).
        assert_eq!(due_at(Timing::at(1, 9, 30).unwrap(), start(), &tz), start() + 18 * H + H / 2);
        // A start at 23:30 local: day 1 is the next calendar day, 30 minutes later for 00:00.
        let late = start() + 8 * H + H / 2;
        assert_eq!(due_at(Timing::at(1, 0, 0).unwrap(), late, &tz), late + H / 2);
        assert_eq!(due_at(Timing::Immediate, start(), &tz), start());
        assert!(Timing::at(0, 24, 0).is_none() && Timing::at(0, 9, 60).is_none());
    }

    #[test]
    fn days_follow_the_courses_time_zone_across_daylight_saving() {
        // New York: 2027-03-14 is the spring change. A start on 03-13 at 12:00 local, day 1
        // at 09:00 local is 20 hours later (not 21).
        let tz = TimeZone::get("America/New_York").unwrap();
        let start: i64 = "2027-03-13T12:00:00-05:00".parse::<jiff::Timestamp>().unwrap().as_millisecond();
        assert_eq!(due_at(Timing::at(1, 9, 0).unwrap(), start, &tz), start + 20 * H);
        // 02:30 does not exist that day: it resolves to 03:30 EDT.
        let gap = due_at(Timing::at(1, 2, 30).unwrap(), start, &tz);
        assert_eq!(gap, "2027-03-14T03:30:00-04:00".parse::<jiff::Timestamp>().unwrap().as_millisecond());
        // 03:15 that day is an earlier instant than 02:30's, yet it is ordered after it: both
        // go out together at 03:30, in order.
        let steps = [step(1, Timing::at(1, 2, 30).unwrap(), 1), step(2, Timing::at(1, 3, 15).unwrap(), 1)];
        assert_eq!(plan(&steps, start, &tz), vec![Slot { at: gap, steps: vec![1, 2] }]);
    }

    #[test]
    fn the_plan_orders_by_timing_then_order_and_bundles_what_is_due_together() {
        let tz = tokyo();
        let steps = [
            step(10, Timing::at(1, 9, 0).unwrap(), 1),
            step(11, Timing::Immediate, 2),
            step(12, Timing::Immediate, 1),
            step(13, Timing::at(0, 10, 0).unwrap(), 1), // passed: at once, after the immediates
            step(14, Timing::at(1, 9, 0).unwrap(), 2),
            step(15, Timing::at(0, 20, 0).unwrap(), 1),
        ];
        let plan = plan(&steps, start(), &tz);
        assert_eq!(
            plan,
            vec![
                Slot { at: start(), steps: vec![12, 11, 13] },
                Slot { at: start() + 5 * H, steps: vec![15] },
                Slot { at: start() + 18 * H, steps: vec![10, 14] },
            ]
        );
    }

    #[test]
    fn due_sends_what_is_due_once_and_names_the_next_instant() {
        let tz = tokyo();
        let steps = [
            step(1, Timing::Immediate, 1),
            step(2, Timing::at(0, 20, 0).unwrap(), 1),
            step(3, Timing::at(1, 9, 0).unwrap(), 1),
        ];
        let none = |_: i64| false;
        let d = due(&steps, start(), &tz, &none, None, start());
        assert_eq!(d, Due { send: vec![1], skip: vec![], next_at: Some(start() + 5 * H) });
        let first = |id: i64| id == 1;
        let d = due(&steps, start(), &tz, &first, None, start() + 6 * H);
        assert_eq!(d, Due { send: vec![2], skip: vec![], next_at: Some(start() + 18 * H) });
        // A dispatcher late by two days sends both, in order.
        let d = due(&steps, start(), &tz, &none, None, start() + 48 * H);
        assert_eq!(d, Due { send: vec![1, 2, 3], skip: vec![], next_at: None });
        let all = |_: i64| true;
        assert_eq!(due(&steps, start(), &tz, &all, None, start() + 48 * H), Due::default());
    }

    #[test]
    fn what_fell_due_while_blocked_is_skipped_and_the_sequence_resumes() {
        let tz = tokyo();
        let steps = [
            step(1, Timing::Immediate, 1),
            step(2, Timing::at(0, 20, 0).unwrap(), 1),
            step(3, Timing::at(1, 9, 0).unwrap(), 1),
        ];
        // Step 1 was sent; the student blocked at 16:00 and unblocked at 22:00.
        let sent = |id: i64| id == 1;
        let resumed = start() + 7 * H;
        let d = due(&steps, start(), &tz, &sent, Some(resumed), resumed);
        assert_eq!(d, Due { send: vec![], skip: vec![2], next_at: Some(start() + 18 * H) });
        let handled = |id: i64| id <= 2;
        let d = due(&steps, start(), &tz, &handled, Some(resumed), start() + 18 * H);
        assert_eq!(d, Due { send: vec![3], skip: vec![], next_at: None }, "the next step goes out");
    }
}
