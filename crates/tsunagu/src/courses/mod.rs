//! Courses on LINE (issue 13): an instructor's course, its step messages, and their delivery to
//! each student who befriends the course's official account.
//!
//! Built so far: the delivery engine's pure core.
//! - [`schedule`]: when each step falls due for a subscription, in which order, and what a
//!   block skips. The dispatcher, the console's preview and the delivery log read it alike.
//! - [`fanout`]: how the steps due for many students become LINE requests (reply when free,
//!   chunks of 5 messages, multicast for crowds sharing the same chunk).
//!
//! - Storage (`tsunagu_store::courses`, migration 0011): courses, steps (with the range of
//!   subscription starts each applies to, for edits meant for new students only), students,
//!   subscriptions with their next delivery and a dispatcher's lease, handled steps, and LINE
//!   requests with their retry keys. Claims are disjoint across processes (tested on both
//!   backends).
//!
//! - [`dispatch`]: the job `courses.dispatch`. It claims due subscriptions in batches, stores
//!   each request with its retry key and its steps as `sending` (with each subscription's next
//!   instant) in one transaction, then sends; a request left pending (a dead process, a failure
//!   worth retrying) is sent again after its lease with the same key, and LINE's 409 settles it.
//!   It queues its own next run for the earliest instant anything falls due.
//!
//! Not built yet (issue 13 stays open): the console's screens (courses, steps, 公式LINE連携,
//! LINEステップ配信設定, テスト配信, the delivery log, quota), the student side (course page,
//! sign-up, LINE Login with the friend prompt, follow/unfollow starting, pausing and resuming
//! subscriptions), the monthly-quota pause, the plan gate, the demo course, and the benchmarks.

pub mod dispatch;
pub mod fanout;
pub mod schedule;

pub use dispatch::job_kinds;
