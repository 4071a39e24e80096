//! Applications after they are made: the one transition to completed (a ¥0 ticket at once, a
//! bank transfer when the organizer confirms it, a payment later), and each person's Zoom
//! registration and join mail, as the per-person job records them. Applying itself, which holds
//! the seats, is [`crate::events::apply`].

use sqlx::{AnyConnection, Row};
use tsunagu_core::AccountId;

use crate::Result;

/// Complete an application that waits (`applied` or `awaiting_payment`): the one transition
/// to `completed`, whatever completed it (a ¥0 ticket at once, a bank transfer confirmed, a
/// payment). Returns the people to register
/// and mail (not cancelled), or `None` when the application was not waiting (already
/// completed, cancelled, or not found), so a repeated call does nothing.
pub async fn complete(c: &mut AnyConnection, application_id: i64, now: i64) -> Result<Option<Vec<i64>>> {
    let r = sqlx::query(
        "UPDATE applications SET status = 'completed', completed_at = $2, updated_at = $2
         WHERE id = $1 AND status IN ('applied', 'awaiting_payment')",
    )
    .bind(application_id)
    .bind(now)
    .execute(&mut *c)
    .await?;
    if r.rows_affected() == 0 {
        return Ok(None);
    }
    Ok(Some(start_people(c, application_id).await?))
}

/// The live people of a completed application, marked as waiting for their registration and
/// mail (the caller queues one job per person in the same transaction).
pub async fn start_people(c: &mut AnyConnection, application_id: i64) -> Result<Vec<i64>> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "UPDATE attendees SET zoom_state = 'waiting' WHERE application_id = $1 AND cancelled_at IS NULL
         RETURNING id",
    )
    .bind(application_id)
    .fetch_all(&mut *c)
    .await?;
    let mut ids = ids;
    ids.sort_unstable();
    Ok(ids)
}

/// The account's application by id (for ［入金を確認］): its event id and status.
pub async fn owned(c: &mut AnyConnection, account: AccountId, application_id: i64) -> Result<Option<(i64, String)>> {
    let row = sqlx::query(
        "SELECT a.event_id, a.status FROM applications a JOIN events e ON e.id = a.event_id
         WHERE a.id = $1 AND e.account_id = $2",
    )
    .bind(application_id)
    .bind(account.0)
    .fetch_optional(c)
    .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// One person, as the per-person job and the pages read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: i64,
    pub application_id: i64,
    pub event_id: i64,
    pub position: i64,
    pub name_kanji: String,
    pub name_kana: String,
    pub email: String,
    pub phone: String,
    pub company: String,
    pub cancelled: bool,
    /// `none`, `waiting`, `adding`, `registered` or `failed`.
    pub zoom_state: String,
    pub zoom_registrant_id: String,
    pub join_url: String,
    pub zoom_reason: String,
    pub mailed_at: Option<i64>,
    /// The application's status.
    pub status: String,
    pub access_key: String,
}

const PERSON_COLUMNS: &str = "p.id, p.application_id, p.event_id, p.position, p.name_kanji, p.name_kana, p.email,
     p.phone, p.company, p.cancelled_at, p.zoom_state, p.zoom_registrant_id, p.join_url, p.zoom_reason, p.mailed_at,
     a.status, a.access_key";

fn person_row(r: &sqlx::any::AnyRow) -> Person {
    Person {
        id: r.get(0),
        application_id: r.get(1),
        event_id: r.get(2),
        position: r.get(3),
        name_kanji: r.get(4),
        name_kana: r.get(5),
        email: r.get(6),
        phone: r.get(7),
        company: r.get(8),
        cancelled: r.get::<Option<i64>, _>(9).is_some(),
        zoom_state: r.get(10),
        zoom_registrant_id: r.get(11),
        join_url: r.get(12),
        zoom_reason: r.get(13),
        mailed_at: r.get(14),
        status: r.get(15),
        access_key: r.get(16),
    }
}

/// A person by id, for the job (which acts for the event's owner).
pub async fn person_for_job(c: &mut AnyConnection, id: i64) -> Result<Option<Person>> {
    let sql = format!(
        "SELECT {PERSON_COLUMNS} FROM attendees p JOIN applications a ON a.id = p.application_id WHERE p.id = $1"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(c).await?;
    Ok(row.as_ref().map(person_row))
}

/// The people of an application in the order entered (representative first).
pub async fn people(c: &mut AnyConnection, application_id: i64) -> Result<Vec<Person>> {
    let sql = format!(
        "SELECT {PERSON_COLUMNS} FROM attendees p JOIN applications a ON a.id = p.application_id
         WHERE p.application_id = $1 ORDER BY p.position"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(application_id).fetch_all(c).await?;
    Ok(rows.iter().map(person_row).collect())
}

/// An application as its page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub id: i64,
    pub event_id: i64,
    pub ticket_name: String,
    pub status: String,
    pub amount_yen: i64,
    pub payment_method: String,
    pub created_at: i64,
    pub people: Vec<Person>,
}

/// The event's applications (newest first), each with its people; `query` keeps those with a
/// person whose name (kanji or kana) or email contains it. The event must be the account's.
pub async fn for_event(
    c: &mut AnyConnection,
    account: AccountId,
    event_id: i64,
    query: &str,
) -> Result<Vec<Application>> {
    let like =
        format!("%{}%", query.trim().to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
    let rows = sqlx::query(
        "SELECT a.id, a.event_id, t.name, a.status, a.amount_yen, a.payment_method, a.created_at
         FROM applications a JOIN events e ON e.id = a.event_id JOIN ticket_types t ON t.id = a.ticket_type_id
         WHERE a.event_id = $1 AND e.account_id = $2
           AND ($3 = '%%' OR EXISTS (SELECT 1 FROM attendees q WHERE q.application_id = a.id
                 AND (LOWER(q.name_kanji) LIKE $3 ESCAPE '\\' OR LOWER(q.name_kana) LIKE $3 ESCAPE '\\'
                      OR LOWER(q.email) LIKE $3 ESCAPE '\\')))
         ORDER BY a.id DESC",
    )
    .bind(event_id)
    .bind(account.0)
    .bind(&like)
    .fetch_all(&mut *c)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: i64 = r.get(0);
        out.push(Application {
            id,
            event_id: r.get(1),
            ticket_name: r.get(2),
            status: r.get(3),
            amount_yen: r.get(4),
            payment_method: r.get(5),
            created_at: r.get(6),
            people: Vec::new(),
        });
    }
    for a in &mut out {
        a.people = people(c, a.id).await?;
    }
    Ok(out)
}

/// The application a participant's link names, with its people.
pub async fn by_access_key(c: &mut AnyConnection, access_key: &str) -> Result<Option<Application>> {
    let row = sqlx::query(
        "SELECT a.id, a.event_id, t.name, a.status, a.amount_yen, a.payment_method, a.created_at
         FROM applications a JOIN ticket_types t ON t.id = a.ticket_type_id WHERE a.access_key = $1",
    )
    .bind(access_key)
    .fetch_optional(&mut *c)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let id: i64 = r.get(0);
    Ok(Some(Application {
        id,
        event_id: r.get(1),
        ticket_name: r.get(2),
        status: r.get(3),
        amount_yen: r.get(4),
        payment_method: r.get(5),
        created_at: r.get(6),
        people: people(c, id).await?,
    }))
}

/// Set how a priced application is paid.
pub async fn set_payment_method(c: &mut AnyConnection, application_id: i64, method: &str) -> Result<()> {
    sqlx::query("UPDATE applications SET payment_method = $2 WHERE id = $1")
        .bind(application_id)
        .bind(method)
        .execute(c)
        .await?;
    Ok(())
}

/// Before a POST that adds the person at Zoom: from now on a retry looks the email up first.
pub async fn mark_adding(c: &mut AnyConnection, id: i64) -> Result<()> {
    sqlx::query("UPDATE attendees SET zoom_state = 'adding' WHERE id = $1 AND zoom_state = 'waiting'")
        .bind(id)
        .execute(c)
        .await?;
    Ok(())
}

/// The person is registered (or, without registration, has the event's shared URL).
pub async fn record_registered(c: &mut AnyConnection, id: i64, registrant_id: &str, join_url: &str) -> Result<()> {
    sqlx::query(
        "UPDATE attendees SET zoom_state = 'registered', zoom_registrant_id = $2, join_url = $3, zoom_reason = ''
         WHERE id = $1",
    )
    .bind(id)
    .bind(registrant_id)
    .bind(join_url)
    .execute(c)
    .await?;
    Ok(())
}

/// Registration failed for good (the organizer sees the reason and ［再試行］), or waits for a
/// Zoom limit (`failed` = false: the reason is shown, the state kept).
pub async fn record_zoom_problem(c: &mut AnyConnection, id: i64, reason: &str, failed: bool) -> Result<()> {
    let sql = if failed {
        "UPDATE attendees SET zoom_reason = $2, zoom_state = CASE WHEN zoom_state = 'registered' THEN zoom_state ELSE 'failed' END WHERE id = $1"
    } else {
        "UPDATE attendees SET zoom_reason = $2 WHERE id = $1"
    };
    sqlx::query(sql).bind(id).bind(reason).execute(c).await?;
    Ok(())
}

/// Mark the person's join mail as queued, in the transaction that queues it. Returns false
/// (queue nothing) when it was queued already or the person is cancelled.
pub async fn mark_mailed(c: &mut AnyConnection, id: i64, now: i64) -> Result<bool> {
    let r =
        sqlx::query("UPDATE attendees SET mailed_at = $2 WHERE id = $1 AND mailed_at IS NULL AND cancelled_at IS NULL")
            .bind(id)
            .bind(now)
            .execute(c)
            .await?;
    Ok(r.rows_affected() == 1)
}

/// ［再試行］: a failed person of the account's event is tried again; marked `adding`, since an
/// earlier attempt may have reached Zoom, so the email is looked up before any add. Returns
/// whether they were failed.
pub async fn retry_person(c: &mut AnyConnection, account: AccountId, id: i64) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE attendees SET zoom_state = 'adding', zoom_reason = ''
         WHERE id = $1 AND zoom_state = 'failed' AND cancelled_at IS NULL
           AND event_id IN (SELECT id FROM events WHERE account_id = $2)",
    )
    .bind(id)
    .bind(account.0)
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The participant's key of an application.
pub async fn access_key_of(c: &mut AnyConnection, application_id: i64) -> Result<Option<String>> {
    Ok(sqlx::query_scalar("SELECT access_key FROM applications WHERE id = $1")
        .bind(application_id)
        .fetch_optional(c)
        .await?)
}

/// The participant's key of the application a form made, if that form was stored.
pub async fn access_key_by_submit_key(
    c: &mut AnyConnection,
    event_id: i64,
    submit_key: &str,
) -> Result<Option<String>> {
    Ok(sqlx::query_scalar("SELECT access_key FROM applications WHERE event_id = $1 AND submit_key = $2")
        .bind(event_id)
        .bind(submit_key)
        .fetch_optional(c)
        .await?)
}

/// What a cancellation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// These people (ids) were cancelled and their seats returned; `whole` when the whole
    /// application was.
    Done {
        people: Vec<i64>,
        whole: bool,
    },
    /// Already cancelled: nothing changed.
    Already,
    NotFound,
}

/// Cancel an application, or one companion of it (`person`: a companion's id; the
/// representative's id cancels the whole application). The event's row is locked first, as
/// applying does, so seats and ticket counts stay exact; the seats return to 定員 and each
/// cancelled person's email may apply again. Runs in the caller's transaction, which queues
/// each person's unregistration and mail.
pub async fn cancel(c: &mut AnyConnection, application_id: i64, person: Option<i64>, now: i64) -> Result<Cancelled> {
    let event_id: Option<i64> = sqlx::query_scalar("SELECT event_id FROM applications WHERE id = $1")
        .bind(application_id)
        .fetch_optional(&mut *c)
        .await?;
    let Some(event_id) = event_id else { return Ok(Cancelled::NotFound) };
    // The event's row first (as applying does), then the application as it is under that lock:
    // a cancel racing this one waits here and then finds it cancelled.
    sqlx::query("UPDATE events SET updated_at = updated_at WHERE id = $1").bind(event_id).execute(&mut *c).await?;
    let row = sqlx::query("SELECT ticket_type_id, status FROM applications WHERE id = $1")
        .bind(application_id)
        .fetch_one(&mut *c)
        .await?;
    let (ticket_id, status): (i64, String) = (row.get(0), row.get(1));
    if status == "cancelled" {
        return Ok(Cancelled::Already);
    }
    let target: Option<(i64, i64)> = match person {
        Some(p) => {
            let r = sqlx::query(
                "SELECT id, position FROM attendees WHERE id = $1 AND application_id = $2 AND cancelled_at IS NULL",
            )
            .bind(p)
            .bind(application_id)
            .fetch_optional(&mut *c)
            .await?;
            match r {
                Some(r) => Some((r.get(0), r.get(1))),
                None => return Ok(Cancelled::Already),
            }
        }
        None => None,
    };
    let whole = target.is_none_or(|(_, position)| position == 0);
    let ids: Vec<i64> = if whole {
        sqlx::query_scalar(
            "UPDATE attendees SET cancelled_at = $2, email_key = NULL WHERE application_id = $1 AND cancelled_at IS NULL
             RETURNING id",
        )
        .bind(application_id)
        .bind(now)
        .fetch_all(&mut *c)
        .await?
    } else {
        let (id, _) = target.expect("a companion");
        sqlx::query_scalar("UPDATE attendees SET cancelled_at = $2, email_key = NULL WHERE id = $1 RETURNING id")
            .bind(id)
            .bind(now)
            .fetch_all(&mut *c)
            .await?
    };
    let n = ids.len() as i64;
    if whole {
        sqlx::query("UPDATE applications SET status = 'cancelled', cancelled_at = $2, updated_at = $2 WHERE id = $1")
            .bind(application_id)
            .bind(now)
            .execute(&mut *c)
            .await?;
    } else {
        sqlx::query(
            "UPDATE applications SET people = people - $2, amount_yen = amount_yen - amount_yen / people * $2,
                 updated_at = $3 WHERE id = $1",
        )
        .bind(application_id)
        .bind(n)
        .bind(now)
        .execute(&mut *c)
        .await?;
    }
    sqlx::query("UPDATE events SET seats_taken = seats_taken - $2 WHERE id = $1")
        .bind(event_id)
        .bind(n)
        .execute(&mut *c)
        .await?;
    sqlx::query("UPDATE ticket_types SET taken = taken - $2 WHERE id = $1")
        .bind(ticket_id)
        .bind(n)
        .execute(&mut *c)
        .await?;
    let mut ids = ids;
    ids.sort_unstable();
    Ok(Cancelled::Done { people: ids, whole })
}

/// After a person's Zoom registration `registrant_id` was removed (or, `""`, none was found).
/// Recorded only if no registration was recorded for them meanwhile (an add that landed while
/// this removal ran): then that one is left for the removal queued with it.
pub async fn record_unregistered(c: &mut AnyConnection, id: i64, registrant_id: &str) -> Result<()> {
    sqlx::query(
        "UPDATE attendees SET zoom_state = 'removed', zoom_reason = '' WHERE id = $1 AND zoom_registrant_id = $2",
    )
    .bind(id)
    .bind(registrant_id)
    .execute(c)
    .await?;
    Ok(())
}

/// Record a registration. Returns false when the person was cancelled meanwhile: the
/// registrant is still recorded (as `registered`, with its id), so that the removal the caller
/// then queues deletes it at Zoom by that id.
pub async fn record_registered_if_live(
    c: &mut AnyConnection,
    id: i64,
    registrant_id: &str,
    join_url: &str,
) -> Result<bool> {
    let row = sqlx::query(
        "UPDATE attendees SET zoom_state = 'registered', zoom_registrant_id = $2, join_url = $3, zoom_reason = ''
         WHERE id = $1 RETURNING cancelled_at",
    )
    .bind(id)
    .bind(registrant_id)
    .bind(join_url)
    .fetch_optional(c)
    .await?;
    Ok(row.is_some_and(|r| r.get::<Option<i64>, _>(0).is_none()))
}

/// No Zoom registration applies to the person (the event does not use Zoom).
pub async fn record_no_zoom(c: &mut AnyConnection, id: i64) -> Result<()> {
    sqlx::query("UPDATE attendees SET zoom_state = 'none' WHERE id = $1").bind(id).execute(c).await?;
    Ok(())
}

/// The people of the event's completed applications who are not cancelled and were sent their
/// join mail: those to tell when the event moves.
pub async fn mailed_people(c: &mut AnyConnection, event_id: i64) -> Result<Vec<Person>> {
    let sql = format!(
        "SELECT {PERSON_COLUMNS} FROM attendees p JOIN applications a ON a.id = p.application_id
         WHERE p.event_id = $1 AND a.status = 'completed' AND p.cancelled_at IS NULL AND p.mailed_at IS NOT NULL
         ORDER BY p.id"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(event_id).fetch_all(c).await?;
    Ok(rows.iter().map(person_row).collect())
}

/// Every live person of the event's completed applications goes back to waiting for their
/// registration and join mail: for a Zoom meeting made anew (their links are to the old one).
pub async fn reregister_all(c: &mut AnyConnection, event_id: i64) -> Result<Vec<i64>> {
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "UPDATE attendees SET zoom_state = 'waiting', zoom_registrant_id = '', zoom_reason = '', join_url = '',
             mailed_at = NULL
         WHERE event_id = $1 AND cancelled_at IS NULL
           AND application_id IN (SELECT id FROM applications WHERE status = 'completed')
         RETURNING id",
    )
    .bind(event_id)
    .fetch_all(&mut *c)
    .await?;
    ids.sort_unstable();
    Ok(ids)
}

/// An application by id with its people (for jobs, which act for the event's owner).
pub async fn by_id(c: &mut AnyConnection, application_id: i64) -> Result<Option<Application>> {
    let key = access_key_of(c, application_id).await?;
    match key {
        Some(k) => by_access_key(c, &k).await,
        None => Ok(None),
    }
}

/// How far the event's completed people are: (live people, registered at Zoom, mailed).
pub async fn progress(c: &mut AnyConnection, event_id: i64) -> Result<(i64, i64, i64)> {
    let r = sqlx::query(
        "SELECT COUNT(*),
                COALESCE(SUM(CASE WHEN p.zoom_state = 'registered' THEN 1 ELSE 0 END), 0),
                COALESCE(SUM(CASE WHEN p.mailed_at IS NOT NULL THEN 1 ELSE 0 END), 0)
         FROM attendees p JOIN applications a ON a.id = p.application_id
         WHERE p.event_id = $1 AND a.status = 'completed' AND p.cancelled_at IS NULL",
    )
    .bind(event_id)
    .fetch_one(c)
    .await?;
    Ok((r.get(0), r.get(1), r.get(2)))
}

/// When the application completed (paid, for a priced one).
pub async fn completed_at(c: &mut AnyConnection, application_id: i64) -> Result<Option<i64>> {
    let t: Option<Option<i64>> = sqlx::query_scalar("SELECT completed_at FROM applications WHERE id = $1")
        .bind(application_id)
        .fetch_optional(c)
        .await?;
    Ok(t.flatten())
}
