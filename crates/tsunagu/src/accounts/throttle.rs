//! Login throttling per email and per client IP, shared by all instances through the database.
//! After a few failures each further attempt must wait (1 s, 2 s, 4 s … up to a minute);
//! after many, attempts are refused for 15 minutes. Refused attempts do not check the password.
//! The per-email lock is a deliberate trade-off: someone who knows an address can keep its
//! owner out for 15 minutes at a time, but cannot guess the password.

use tsunagu_store::throttle::{self, ThrottleState};
use tsunagu_store::{Store, StoreError};

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
                "ログインの失敗が続いたため、一時的に制限しています。{seconds}秒後にもう一度お試しください。"
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

fn worse(a: Gate, b: Gate) -> Gate {
    match (a, b) {
        (Gate::Locked { minutes: x }, Gate::Locked { minutes: y }) => Gate::Locked { minutes: x.max(y) },
        (l @ Gate::Locked { .. }, _) | (_, l @ Gate::Locked { .. }) => l,
        (Gate::Wait { seconds: x }, Gate::Wait { seconds: y }) => Gate::Wait { seconds: x.max(y) },
        (w @ Gate::Wait { .. }, Gate::Open) | (Gate::Open, w @ Gate::Wait { .. }) => w,
        (Gate::Open, Gate::Open) => Gate::Open,
    }
}

fn after_failure(mut s: ThrottleState, limits: Limits, now: i64) -> ThrottleState {
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
    s
}

/// Admit or refuse one attempt. An admitted attempt is counted as a failure *before* the
/// password is checked, under a row lock, so parallel guesses cannot slip past the limits;
/// [`refund`] takes the charge back when the password was right. Refused attempts are not
/// counted and do not check the password at all.
pub async fn charge(store: &Store, keys: &[(String, Limits)], now: i64) -> Result<Gate, StoreError> {
    let mut tx = store.begin().await?;
    let mut gate = Gate::Open;
    let mut states = Vec::with_capacity(keys.len());
    for (key, limits) in keys {
        let s = throttle::lock(&mut tx, store.backend(), key, now).await?;
        gate = worse(gate, gate_of(&s, *limits, now));
        states.push(s);
    }
    if gate == Gate::Open {
        for ((key, limits), s) in keys.iter().zip(states) {
            throttle::put(&mut tx, key, after_failure(s, *limits, now)).await?;
        }
    }
    tx.commit().await?;
    Ok(gate)
}

/// The password was right: forget the email's failures, and take this attempt's charge back
/// from the IP (people behind one office router log in all day).
pub async fn refund(
    store: &Store,
    email_key: &str,
    ip_key: &str,
    ip_limits: Limits,
    now: i64,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    throttle::clear(&mut tx, email_key).await?;
    let mut s = throttle::lock(&mut tx, store.backend(), ip_key, now).await?;
    // A correct password from this address lifts the address's wait (people share office
    // routers); its count stays, so a run of failures re-blocks at once. Each email keeps its
    // own limit, so this does not help anyone guess a particular account.
    s.failures = (s.failures - 1).max(0);
    if s.failures < ip_limits.lock_after {
        s.blocked_until = 0;
    }
    throttle::put(&mut tx, ip_key, s).await?;
    tx.commit().await?;
    Ok(())
}
