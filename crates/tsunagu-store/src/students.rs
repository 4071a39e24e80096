//! Students (受講生) on the public host: their sessions, their log-in by email within an
//! instructor's account, their LINE users, and their subscriptions as they see them. A
//! student's session is a student's only: the console's sessions are another table.

use sqlx::{AnyConnection, Row};
use tsunagu_core::AccountId;

use crate::Result;

/// A student as the public pages need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Student {
    pub id: i64,
    pub account_id: Option<AccountId>,
    pub email: Option<String>,
    pub display_name: String,
}

fn student_of(r: &sqlx::any::AnyRow) -> Student {
    let account: Option<i64> = r.get(1);
    Student { id: r.get(0), account_id: account.map(AccountId), email: r.get(2), display_name: r.get(3) }
}

pub async fn get(c: &mut AnyConnection, id: i64) -> Result<Option<Student>> {
    let row = sqlx::query("SELECT id, account_id, email, display_name FROM students WHERE id = $1")
        .bind(id)
        .fetch_optional(c)
        .await?;
    Ok(row.as_ref().map(student_of))
}

/// The account's student with this (lowercase) email, and their password hash.
pub async fn by_email(
    c: &mut AnyConnection,
    account: AccountId,
    email: &str,
) -> Result<Option<(Student, Option<String>)>> {
    let row = sqlx::query(
        "SELECT id, account_id, email, display_name, password_hash FROM students WHERE account_id = $1 AND email = $2",
    )
    .bind(account.0)
    .bind(email)
    .fetch_optional(c)
    .await?;
    Ok(row.map(|r| (student_of(&r), r.get(4))))
}

/// Start a session (the token's hash is stored).
pub async fn create_session(
    c: &mut AnyConnection,
    token_hash: &str,
    student: i64,
    now: i64,
    expires_at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO student_sessions (token_hash, student_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(token_hash)
    .bind(student)
    .bind(now)
    .bind(expires_at)
    .execute(c)
    .await?;
    Ok(())
}

/// The student of a live session.
pub async fn session_student(c: &mut AnyConnection, token_hash: &str, now: i64) -> Result<Option<Student>> {
    let row = sqlx::query(
        "SELECT s.id, s.account_id, s.email, s.display_name FROM student_sessions x JOIN students s ON s.id = x.student_id
         WHERE x.token_hash = $1 AND x.expires_at > $2",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(c)
    .await?;
    Ok(row.as_ref().map(student_of))
}

pub async fn end_session(c: &mut AnyConnection, token_hash: &str) -> Result<()> {
    sqlx::query("DELETE FROM student_sessions WHERE token_hash = $1").bind(token_hash).execute(c).await?;
    Ok(())
}

/// The student a LINE user on a Login channel is, within the account.
pub async fn by_line_user(
    c: &mut AnyConnection,
    account: AccountId,
    login_channel_id: &str,
    line_user_id: &str,
) -> Result<Option<Student>> {
    let row = sqlx::query(
        "SELECT s.id, s.account_id, s.email, s.display_name FROM student_line_links l JOIN students s ON s.id = l.student_id
         WHERE l.login_channel_id = $1 AND l.line_user_id = $2 AND s.account_id = $3",
    )
    .bind(login_channel_id)
    .bind(line_user_id)
    .bind(account.0)
    .fetch_optional(c)
    .await?;
    Ok(row.as_ref().map(student_of))
}

/// What linking a LINE user to a student did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linked {
    /// Linked now, or already so.
    Yes,
    /// The LINE user is another student's on this channel; nothing changed.
    OtherStudent,
    /// The student already has another LINE user on this channel; nothing changed.
    OtherLineUser,
}

/// Link the student's LINE user on a Login channel (one LINE user is one student per channel).
pub async fn link_line(
    c: &mut AnyConnection,
    student: i64,
    login_channel_id: &str,
    line_user_id: &str,
    now: i64,
) -> Result<Linked> {
    sqlx::query(
        "INSERT INTO student_line_links (student_id, login_channel_id, line_user_id, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
    )
    .bind(student)
    .bind(login_channel_id)
    .bind(line_user_id)
    .bind(now)
    .execute(&mut *c)
    .await?;
    let rows = sqlx::query(
        "SELECT student_id, line_user_id FROM student_line_links
         WHERE login_channel_id = $1 AND (student_id = $2 OR line_user_id = $3)",
    )
    .bind(login_channel_id)
    .bind(student)
    .bind(line_user_id)
    .fetch_all(c)
    .await?;
    for r in &rows {
        let (s, u): (i64, String) = (r.get(0), r.get(1));
        if s == student && u != line_user_id {
            return Ok(Linked::OtherLineUser);
        }
        if s != student && u == line_user_id {
            return Ok(Linked::OtherStudent);
        }
    }
    Ok(Linked::Yes)
}

/// A student's subscription to a course as the course page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolment {
    pub subscription_id: i64,
    /// `waiting_friend`, `active`, `blocked` or `paused`.
    pub state: String,
    pub line_user_id: Option<String>,
    pub started_at: Option<i64>,
}

pub async fn enrolment(c: &mut AnyConnection, course_id: i64, student: i64) -> Result<Option<Enrolment>> {
    let row = sqlx::query(
        "SELECT id, state, line_user_id, started_at FROM course_subscriptions WHERE course_id = $1 AND student_id = $2",
    )
    .bind(course_id)
    .bind(student)
    .fetch_optional(c)
    .await?;
    Ok(row.map(|r| Enrolment {
        subscription_id: r.get(0),
        state: r.get(1),
        line_user_id: r.get(2),
        started_at: r.get(3),
    }))
}
