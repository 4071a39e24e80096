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
//! The dispatcher, planned on top (ARCHITECTURE "Step delivery"): each subscription row keeps
//! the instant of its next delivery (`next_at`) and each handled step has a delivery row
//! (unique per subscription and step, so a step is recorded sent or skipped at most once). The
//! dispatcher claims due subscriptions in batches (`FOR UPDATE SKIP LOCKED` on PostgreSQL),
//! computes [`schedule::due`] for each, plans [`fanout::requests`], and writes each request with
//! its retry key and its delivery rows before sending it; a retry sends the same key, and LINE's
//! 409 means it was sent.

pub mod fanout;
pub mod schedule;
