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

pub mod console;
pub mod dispatch;
pub mod fanout;
pub mod log;
pub mod messages;
pub mod quota;
pub mod sample;
pub mod schedule;
pub mod student;
pub mod test_send;

pub use dispatch::job_kinds;

/// The console's course pages, and the students' (`/c/…`, public host).
pub fn routes() -> axum::Router<crate::app::SharedApp> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/courses", get(console::list))
        .route("/courses/new", get(console::new_form).post(console::create))
        .route("/courses/{id}", get(console::show))
        .route("/courses/{id}/edit", get(console::edit_form).post(console::update))
        .route("/courses/{id}/delete", post(console::delete))
        .route("/courses/{id}/lessons", post(console::add_lesson))
        .route("/courses/{id}/lessons/{lesson}", post(console::update_lesson))
        .route("/courses/{id}/lessons/{lesson}/delete", post(console::delete_lesson))
        .route("/courses/{id}/line", get(messages::show).post(messages::save_channel))
        .route("/courses/{id}/line/preview", get(messages::preview))
        .route("/courses/{id}/line/log", get(log::show))
        .route("/courses/{id}/line/resume", post(messages::resume))
        .route("/courses/{id}/line/due-now", post(messages::due_now))
        .route("/courses/{id}/line/messages/new", get(messages::new_form).post(messages::create))
        .route("/courses/{id}/line/messages/{step}/edit", get(messages::edit_form).post(messages::update))
        .route("/courses/{id}/line/messages/{step}/delete", post(messages::delete))
        .route("/courses/{id}/line/test-recipients", get(test_send::recipients))
        .route("/courses/{id}/line/test-recipients/login", get(test_send::start_login))
        .route("/courses/{id}/line/test-recipients/{recipient}/delete", post(test_send::delete_recipient))
        .route("/courses/{id}/line/test", get(test_send::choose).post(test_send::send))
        .route("/c/{key}", get(student::page))
        .route("/c/{key}/start", post(student::start))
        .route("/c/{key}/signup", get(student::signup_form).post(student::signup))
        .route("/c/{key}/login", get(student::login_form).post(student::login_submit))
        .route("/c/{key}/logout", post(student::logout))
        .route("/c/{key}/line", get(student::prompt))
        .route("/c/{key}/line/login", get(student::line_login))
}
