//! Store conformance suite: every case runs on SQLite and on PostgreSQL.
//!
//! PostgreSQL comes from `TSUNAGU_TEST_PG_URL` (an admin URL; each test creates its own
//! database). `./scripts/test` starts a throwaway server and sets it. Without it the
//! PostgreSQL half is skipped locally, and fails under CI so that it cannot silently vanish.

mod conformance;
mod harness;
mod queue;
mod rate;
mod schema_compare;
