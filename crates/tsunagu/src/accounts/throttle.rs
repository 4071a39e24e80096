//! Login throttling per email and per client IP, shared by all instances through the database.
//! After a few failures each further attempt must wait (1 s, 2 s, 4 s … up to a minute);
//! after many, attempts are refused for 15 minutes. Refused attempts do not check the password.

use tsunagu_store::throttle::{self, ThrottleState};
use tsunagu_store::{AnyConnection, StoreError};

pub const WINDOW_MS: i64 = 15 * 60 * 1000;
pub const LOCK_MS: i64 = 15 * 60 * 1000;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub slow_after: i64,
    pub lock_after: i64,
}

pub const EMAIL_LIMITS: Limits = Limits { slow_after: 3, lock_after: 10 };
pub const IP_LIMITS: Limits = Limits { slow_after: 10, lock_after: 50 };

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// Slowed down: try again after this many seconds.
    Wait {
        seconds: i64,
    },
    /// Refused for a while.
    Locked {
        minutes: i64,
    },
}

impl Gate {
    pub fn message(self) -> Option<String> {
        match self {
            Gate::Open => None,
            Gate::Wait { seconds } => Some(format!(
                "ログインに続けて失敗したため、一時的に制限しています。{seconds}秒後にもう一度お試しください。"
            )),
            Gate::Locked { minutes } => Some(format!(
                "ログインの失敗が多すぎるため、ログインを停止しています。{minutes}分後にもう一度お試しください。パスワードを忘れた場合は管理者にお問い合わせください。"
            )),
        }
    }
}

pub fn email_key(email: &str) -> String {
    format!("email:{email}")
}

pub fn ip_key(ip: &str) -> String {
    format!("ip:{ip}")
}

fn gate_of(s: &ThrottleState, limits: Limits, now: i64) -> Gate {
    if s.blocked_until <= now {
        return Gate::Open;
    }
    let left = s.blocked_until - now;
    if s.failures >= limits.lock_after {
        Gate::Locked { minutes: (left + 59_999) / 60_000 }
    } else {
        Gate::Wait { seconds: (left + 999) / 1000 }
    }
}

/// The strictest gate over the given keys.
pub async fn check(c: &mut AnyConnection, keys: &[(String, Limits)], now: i64) -> Result<Gate, StoreError> {
    let mut worst = Gate::Open;
    for (key, limits) in keys {
        if let Some(s) = throttle::get(c, key).await? {
            worst = match (worst, gate_of(&s, *limits, now)) {
                (Gate::Locked { minutes: a }, Gate::Locked { minutes: b }) => Gate::Locked { minutes: a.max(b) },
                (l @ Gate::Locked { .. }, _) | (_, l @ Gate::Locked { .. }) => l,
                (Gate::Wait { seconds: a }, Gate::Wait { seconds: b }) => Gate::Wait { seconds: a.max(b) },
                (w @ Gate::Wait { .. }, Gate::Open) | (Gate::Open, w @ Gate::Wait { .. }) => w,
                (Gate::Open, Gate::Open) => Gate::Open,
            };
        }
    }
    Ok(worst)
}

pub async fn record_failure(c: &mut AnyConnection, key: &str, limits: Limits, now: i64) -> Result<(), StoreError> {
    let mut s =
        throttle::get(c, key).await?.unwrap_or(ThrottleState { failures: 0, window_started_at: now, blocked_until: 0 });
    if now - s.window_started_at > WINDOW_MS && s.blocked_until <= now {
        s = ThrottleState { failures: 0, window_started_at: now, blocked_until: 0 };
    }
    s.failures += 1;
    s.blocked_until = if s.failures >= limits.lock_after {
        now + LOCK_MS
    } else if s.failures >= limits.slow_after {
        let exp = (s.failures - limits.slow_after).min(6) as u32;
        now + (1000 * (1i64 << exp)).min(60_000)
    } else {
        0
    };
    throttle::put(c, key, s).await
}

pub async fn record_success(c: &mut AnyConnection, key: &str) -> Result<(), StoreError> {
    throttle::clear(c, key).await
}
