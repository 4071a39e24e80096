//! Upstream limits kept in the database, so that they hold across every process sharing it and
//! across restarts (ARCHITECTURE: "holding across every process that shares the database").
//!
//! - Daily allowances (Zoom's 100 creates+updates per host, 3 adds per registrant email) are
//!   counted in `daily_allowances` on both backends: a restart keeps them.
//! - Per-second limits on PostgreSQL, where several `serve` processes may run, come from one
//!   schedule per key in `rate_budgets` ([`SharedRate`], arithmetic in
//!   [`tsunagu_core::rate::SharedPlan`]). On SQLite, one process in practice, the clients keep
//!   their own in-process limiters: a round trip through SQLite's single writer per chunk of
//!   LINE sends would queue behind every job's writes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tsunagu_core::rate::{BoxFuture, BudgetError, DailyCounter, Rate, RateBudget, SharedPlan};
use tsunagu_store::{Backend, Store, StoreError, rate as store};

/// Reservations in a row whose units all lapsed before this process could hand them out (the
/// database answering slower than the plan's lateness) before a call gives up for now.
const MAX_LAPSES: u32 = 50;

fn unavailable(e: StoreError) -> BudgetError {
    BudgetError(e.to_string())
}

/// The rate budget for a process on `store`: shared through the database on PostgreSQL, `None`
/// on SQLite (the clients' in-process limiters).
pub fn rate_budget(store: &Store) -> Option<Arc<dyn RateBudget>> {
    match store.backend() {
        Backend::Postgres => Some(Arc::new(SharedRate::new(store.clone()))),
        Backend::Sqlite => None,
    }
}

/// Daily allowances counted in the database (both backends).
pub fn daily_counter(store: &Store) -> Arc<dyn DailyCounter> {
    Arc::new(StoredDaily::new(store.clone()))
}

/// Units of one key this process has reserved and not handed out yet.
#[derive(Default)]
struct Lease {
    left: u32,
    /// Not before (this process's clock): the first slot has come on the database's clock.
    from: Option<Instant>,
    /// Not after: the plan's lateness past the first slot, on the database's clock.
    until: Option<Instant>,
}

struct Slot {
    /// Tasks of this process queued for the key behind the one holding `lease`: the size of
    /// the next reservation.
    waiting: AtomicU32,
    lease: tokio::sync::Mutex<Lease>,
}

/// Per-second limits shared by every process on one PostgreSQL database. Each process takes
/// units from the key's schedule in chunks (one round trip for up to
/// [`SharedPlan::chunk`] calls) and hands them out to its waiting tasks in order; units not
/// handed out within the plan's lateness lapse, unused.
pub struct SharedRate {
    store: Store,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

impl SharedRate {
    pub fn new(store: Store) -> SharedRate {
        SharedRate { store, slots: Mutex::default() }
    }

    fn slot(&self, key: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slots.get(key) {
            return s.clone();
        }
        let s = Arc::new(Slot { waiting: AtomicU32::new(0), lease: tokio::sync::Mutex::new(Lease::default()) });
        slots.insert(key.to_string(), s.clone());
        s
    }

    /// Reserve `units` and say when they may be handed out, on this process's clock. The
    /// answer's instant on the database's clock is only known to lie between sending and
    /// receiving, so `from` assumes it was read as late as possible and `until` as early.
    async fn reserve(&self, key: &str, units: u32, plan: &SharedPlan) -> Result<Lease, BudgetError> {
        let sent = Instant::now();
        let r = {
            let mut c = self.store.conn().await.map_err(unavailable)?;
            store::reserve(&mut c, self.store.backend(), key, units, plan.interval_us, plan.horizon_us)
                .await
                .map_err(unavailable)?
        };
        let got = Instant::now();
        let wait = r.wait_us();
        let from = got + Duration::from_micros(wait.max(0) as u64);
        let until = match wait + plan.lateness_us as i64 {
            late if late >= 0 => sent.checked_add(Duration::from_micros(late as u64)),
            _ => None,
        };
        Ok(Lease { left: units, from: Some(from), until })
    }
}

impl RateBudget for SharedRate {
    fn acquire<'a>(&'a self, key: &'a str, rate: Rate) -> BoxFuture<'a, Result<(), BudgetError>> {
        Box::pin(async move {
            let slot = self.slot(key);
            slot.waiting.fetch_add(1, Ordering::SeqCst);
            let mut lease = slot.lease.lock().await;
            slot.waiting.fetch_sub(1, Ordering::SeqCst);
            let plan = SharedPlan::new(rate);
            let mut lapses = 0;
            loop {
                let now = Instant::now();
                if let (true, Some(from), Some(until)) = (lease.left > 0, lease.from, lease.until)
                    && now <= until
                    && from <= until
                {
                    if now < from {
                        tokio::time::sleep_until(from.into()).await;
                        continue;
                    }
                    lease.left -= 1;
                    return Ok(());
                }
                if lease.left > 0 {
                    lapses += 1;
                    if lapses > MAX_LAPSES {
                        *lease = Lease::default();
                        return Err(BudgetError(format!(
                            "the database answered too slowly {MAX_LAPSES} times in a row to use the units reserved for {key}"
                        )));
                    }
                }
                let units = (slot.waiting.load(Ordering::SeqCst) + 1).min(plan.chunk);
                *lease = self.reserve(key, units, &plan).await?;
            }
        })
    }
}

/// Daily allowances counted in `daily_allowances`. Counts of days before yesterday are purged
/// by the first charge of each day in each process.
pub struct StoredDaily {
    store: Store,
    purged_for: AtomicI64,
}

impl StoredDaily {
    pub fn new(store: Store) -> StoredDaily {
        StoredDaily { store, purged_for: AtomicI64::new(i64::MIN) }
    }
}

impl DailyCounter for StoredDaily {
    fn charge<'a>(&'a self, key: &'a str, day: i64, limit: u32) -> BoxFuture<'a, Result<bool, BudgetError>> {
        Box::pin(async move {
            let mut c = self.store.conn().await.map_err(unavailable)?;
            if self.purged_for.swap(day, Ordering::SeqCst) != day {
                // Yesterday is kept: a process whose clock is a little behind still counts it.
                if let Err(e) = store::purge_daily(&mut c, day - 1).await {
                    tracing::warn!(error = %e, "purging old daily allowance counts failed");
                }
            }
            Ok(store::charge_daily(&mut c, key, day, limit).await.map_err(unavailable)?.is_some())
        })
    }

    fn used<'a>(&'a self, key: &'a str, day: i64) -> BoxFuture<'a, Result<u32, BudgetError>> {
        Box::pin(async move {
            let mut c = self.store.read().await.map_err(unavailable)?;
            store::used_daily(&mut c, key, day).await.map_err(unavailable)
        })
    }
}
