//! Events, their ticket types, and the applications to them with each person in them.
//!
//! Seats are held by conditional updates (`seats_taken + n <= capacity`, and the same for a
//! ticket's limit) in the applying transaction: on PostgreSQL the row lock makes a concurrent
//! applicant wait and re-check, on SQLite the one writer does, so a full event is never
//! overbooked. Functions behind an organizer's request take their [`AccountId`].

use sqlx::{AnyConnection, Row};
use tsunagu_core::AccountId;

use crate::{Result, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventState {
    Draft,
    Published,
    Closed,
}

impl EventState {
    pub const fn code(self) -> &'static str {
        match self {
            EventState::Draft => "draft",
            EventState::Published => "published",
            EventState::Closed => "closed",
        }
    }

    pub fn from_code(s: &str) -> Option<EventState> {
        [EventState::Draft, EventState::Published, EventState::Closed].into_iter().find(|e| e.code() == s)
    }

    /// As the organizer reads it.
    pub fn label_ja(self) -> &'static str {
        match self {
            EventState::Draft => "下書き",
            EventState::Published => "公開",
            EventState::Closed => "受付終了",
        }
    }
}

/// What the organizer enters for an event (its tickets are [`NewTicket`]s).
#[derive(Debug, Clone)]
pub struct EventInput<'a> {
    pub title: &'a str,
    pub description: &'a str,
    pub starts_at: i64,
    pub ends_at: i64,
    pub capacity: i64,
    pub apply_from: i64,
    pub apply_until: i64,
    /// Until when a participant may cancel from their own page; `None`: until 申込受付 ends.
    pub cancel_until: Option<i64>,
    /// How to pay a priced ticket (the bank transfer details), shown to applicants.
    pub payment_note: &'a str,
    pub companions_max: i64,
    /// `card`, `konbini`, `bank_transfer`, comma-separated.
    pub payment_methods: &'a str,
    /// Days a konbini voucher runs (1–60).
    pub konbini_days: i64,
    pub state: EventState,
}

#[derive(Debug, Clone)]
pub struct NewTicket<'a> {
    pub name: &'a str,
    pub price_yen: i64,
    pub limit_count: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    pub account_id: AccountId,
    pub public_key: String,
    pub title: String,
    pub description: String,
    pub starts_at: i64,
    pub ends_at: i64,
    pub capacity: i64,
    pub seats_taken: i64,
    pub apply_from: i64,
    pub apply_until: i64,
    pub cancel_until: Option<i64>,
    pub payment_note: String,
    pub companions_max: i64,
    /// `card`, `konbini`, `bank_transfer`.
    pub payment_methods: Vec<String>,
    pub konbini_days: i64,
    pub state: EventState,
    pub tickets: Vec<Ticket>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub id: i64,
    pub name: String,
    pub price_yen: i64,
    pub limit_count: Option<i64>,
    pub taken: i64,
}

/// Create an event with its tickets (in the order given). Returns its id.
pub async fn create(
    c: &mut AnyConnection,
    account: AccountId,
    public_key: &str,
    e: &EventInput<'_>,
    tickets: &[NewTicket<'_>],
    now: i64,
) -> Result<i64> {
    let row = sqlx::query(
        "INSERT INTO events (account_id, public_key, title, description, starts_at, ends_at, capacity, apply_from,
             apply_until, companions_max, state, created_at, updated_at, cancel_until, payment_note, payment_methods,
             konbini_days)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13, $14, $15, $16) RETURNING id",
    )
    .bind(account.0)
    .bind(public_key)
    .bind(e.title)
    .bind(e.description)
    .bind(e.starts_at)
    .bind(e.ends_at)
    .bind(e.capacity)
    .bind(e.apply_from)
    .bind(e.apply_until)
    .bind(e.companions_max)
    .bind(e.state.code())
    .bind(now)
    .bind(e.cancel_until)
    .bind(e.payment_note)
    .bind(e.payment_methods)
    .bind(e.konbini_days)
    .fetch_one(&mut *c)
    .await
    .map_err(|err| crate::conflict(err, "event public key"))?;
    let id: i64 = row.get(0);
    for (i, t) in tickets.iter().enumerate() {
        insert_ticket(c, id, i as i64, t).await?;
    }
    Ok(id)
}

async fn insert_ticket(c: &mut AnyConnection, event_id: i64, position: i64, t: &NewTicket<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO ticket_types (event_id, position, name, price_yen, limit_count) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(event_id)
    .bind(position)
    .bind(t.name)
    .bind(t.price_yen)
    .bind(t.limit_count)
    .execute(c)
    .await?;
    Ok(())
}

const EVENT_COLUMNS: &str = "id, account_id, public_key, title, description, starts_at, ends_at, capacity, seats_taken,
     apply_from, apply_until, companions_max, state, cancel_until, payment_note, payment_methods, konbini_days";

fn event_row(r: &sqlx::any::AnyRow) -> Result<Event> {
    let state: String = r.get(12);
    Ok(Event {
        id: r.get(0),
        account_id: AccountId(r.get(1)),
        public_key: r.get(2),
        title: r.get(3),
        description: r.get(4),
        starts_at: r.get(5),
        ends_at: r.get(6),
        capacity: r.get(7),
        seats_taken: r.get(8),
        apply_from: r.get(9),
        apply_until: r.get(10),
        companions_max: r.get(11),
        cancel_until: r.get(13),
        payment_note: r.get(14),
        payment_methods: r.get::<String, _>(15).split(',').filter(|m| !m.is_empty()).map(str::to_string).collect(),
        konbini_days: r.get(16),
        state: EventState::from_code(&state).ok_or_else(|| StoreError::Corrupt(format!("event state {state:?}")))?,
        tickets: Vec::new(),
    })
}

async fn with_tickets(c: &mut AnyConnection, mut e: Event) -> Result<Event> {
    let rows = sqlx::query(
        "SELECT id, name, price_yen, limit_count, taken FROM ticket_types WHERE event_id = $1 ORDER BY position, id",
    )
    .bind(e.id)
    .fetch_all(c)
    .await?;
    e.tickets = rows
        .iter()
        .map(|r| Ticket { id: r.get(0), name: r.get(1), price_yen: r.get(2), limit_count: r.get(3), taken: r.get(4) })
        .collect();
    Ok(e)
}

/// The account's event, with its tickets.
pub async fn get(c: &mut AnyConnection, account: AccountId, id: i64) -> Result<Option<Event>> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1 AND account_id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(account.0).fetch_optional(&mut *c).await?;
    match row {
        Some(r) => Ok(Some(with_tickets(c, event_row(&r)?).await?)),
        None => Ok(None),
    }
}

/// People of completed applications who are not cancelled: those registered (or being
/// registered) at Zoom.
pub async fn registered_people(c: &mut AnyConnection, event_id: i64) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM attendees p JOIN applications a ON a.id = p.application_id
         WHERE p.event_id = $1 AND a.status = 'completed' AND p.cancelled_at IS NULL",
    )
    .bind(event_id)
    .fetch_one(c)
    .await?)
}

/// 同伴者入力設定 of the account's event as saved (JSON; `""` = the defaults), or `None` when
/// the event is not the account's.
pub async fn companion_fields(c: &mut AnyConnection, account: AccountId, event_id: i64) -> Result<Option<String>> {
    Ok(sqlx::query_scalar("SELECT companion_fields FROM events WHERE id = $1 AND account_id = $2")
        .bind(event_id)
        .bind(account.0)
        .fetch_optional(c)
        .await?)
}

/// 同伴者入力設定 of an event, for its public form.
pub async fn companion_fields_public(c: &mut AnyConnection, event_id: i64) -> Result<String> {
    Ok(sqlx::query_scalar("SELECT companion_fields FROM events WHERE id = $1")
        .bind(event_id)
        .fetch_optional(c)
        .await?
        .unwrap_or_default())
}

/// Save 同伴者入力設定 of the account's event. Returns whether the event is the account's.
pub async fn set_companion_fields(
    c: &mut AnyConnection,
    account: AccountId,
    event_id: i64,
    json: &str,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query("UPDATE events SET companion_fields = $3, updated_at = $4 WHERE id = $1 AND account_id = $2")
        .bind(event_id)
        .bind(account.0)
        .bind(json)
        .bind(now)
        .execute(c)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// An event by id whoever owns it: for jobs, which act for the event's owner.
pub async fn get_for_job(c: &mut AnyConnection, id: i64) -> Result<Option<Event>> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&mut *c).await?;
    match row {
        Some(r) => Ok(Some(with_tickets(c, event_row(&r)?).await?)),
        None => Ok(None),
    }
}

/// A published or closed event by its public key (drafts are not public).
pub async fn public(c: &mut AnyConnection, public_key: &str) -> Result<Option<Event>> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE public_key = $1 AND state <> 'draft'");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(public_key).fetch_optional(&mut *c).await?;
    match row {
        Some(r) => Ok(Some(with_tickets(c, event_row(&r)?).await?)),
        None => Ok(None),
    }
}

/// What the public application form needs, read in two statements.
#[derive(Debug, Clone)]
pub struct PublicForm {
    pub event: Event,
    /// The organizer's account's time zone.
    pub time_zone: String,
    /// ［Zoom設定］'s options as JSON, when the event uses Zoom.
    pub zoom_options: Option<String>,
    /// The Zoom hosts' emails (lowercase), when the event uses Zoom.
    pub host_emails: Vec<String>,
    /// 同伴者入力設定 as JSON.
    pub companion_fields: String,
}

/// A published or closed event by its public key, with what its application form needs.
pub async fn public_form(c: &mut AnyConnection, public_key: &str) -> Result<Option<PublicForm>> {
    let columns = EVENT_COLUMNS.split(',').map(|c| format!("e.{}", c.trim())).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT {columns}, a.time_zone, z.options, z.host_emails, e.companion_fields
         FROM events e JOIN accounts a ON a.id = e.account_id
         LEFT JOIN event_zoom z ON z.event_id = e.id AND z.enabled = 1
         WHERE e.public_key = $1 AND e.state <> 'draft'"
    );
    let Some(r) = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(public_key).fetch_optional(&mut *c).await? else {
        return Ok(None);
    };
    let event = with_tickets(c, event_row(&r)?).await?;
    let hosts: Option<String> = r.get(19);
    Ok(Some(PublicForm {
        event,
        time_zone: r.get(17),
        zoom_options: r.get(18),
        host_emails: hosts.unwrap_or_default().split_whitespace().map(str::to_string).collect(),
        companion_fields: r.get::<Option<String>, _>(20).unwrap_or_default(),
    }))
}

/// One line of 申込状況サマリー: the event and its applications counted by status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub event: Event,
    pub applied: i64,
    pub awaiting_payment: i64,
    pub completed: i64,
    pub cancelled: i64,
}

impl Summary {
    pub fn seats_left(&self) -> i64 {
        self.event.capacity - self.event.seats_taken
    }
}

/// Every event of the account, soonest first, with its counts (tickets not loaded).
pub async fn summaries(c: &mut AnyConnection, account: AccountId) -> Result<Vec<Summary>> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS},
             (SELECT COUNT(*) FROM applications a WHERE a.event_id = events.id AND a.status = 'applied'),
             (SELECT COUNT(*) FROM applications a WHERE a.event_id = events.id AND a.status = 'awaiting_payment'),
             (SELECT COUNT(*) FROM applications a WHERE a.event_id = events.id AND a.status = 'completed'),
             (SELECT COUNT(*) FROM applications a WHERE a.event_id = events.id AND a.status = 'cancelled')
         FROM events WHERE account_id = $1 ORDER BY starts_at, id"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account.0).fetch_all(c).await?;
    rows.iter()
        .map(|r| {
            Ok(Summary {
                event: event_row(r)?,
                applied: r.get(17),
                awaiting_payment: r.get(18),
                completed: r.get(19),
                cancelled: r.get(20),
            })
        })
        .collect()
}

/// Whether the account has an event with a priced ticket that is not a draft (published, or
/// closed but still shown): what its 特定商取引法に基づく表記 is shown for.
pub async fn sells_priced(c: &mut AnyConnection, account: AccountId) -> Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM events e WHERE e.account_id = $1 AND e.state <> 'draft'
           AND EXISTS (SELECT 1 FROM ticket_types t WHERE t.event_id = e.id AND t.price_yen > 0)",
    )
    .bind(account.0)
    .fetch_one(c)
    .await?;
    Ok(n > 0)
}

/// A person in an application as entered (position 0 is the representative).
#[derive(Debug, Clone)]
pub struct NewPerson<'a> {
    pub name_kanji: &'a str,
    pub name_kana: &'a str,
    pub email: &'a str,
    pub phone: &'a str,
    pub company: &'a str,
}

#[derive(Debug, Clone)]
pub struct NewApplication<'a> {
    pub event_id: i64,
    pub ticket_type_id: i64,
    /// The form's own key: the same form sent again finds the application it made.
    pub submit_key: &'a str,
    pub access_key: &'a str,
    pub people: &'a [NewPerson<'a>],
    /// Whether each person's email must be unique among the event's live people (a Zoom
    /// event with registration).
    pub unique_emails: bool,
    /// The status of a priced application: `applied` (completes when paid) or
    /// `awaiting_payment` (a bank transfer). A ¥0 ticket's application is stored `applied`
    /// whatever this says, decided on the price read under the ticket's row lock.
    pub status: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A new application; `free` when its ticket is ¥0 (stored `applied`, for the caller to
    /// complete at once through `applications::complete`, in the same transaction).
    Created { id: i64, free: bool },
    /// This form was sent before: the application it made.
    Again { id: i64 },
    /// Not enough seats left for this many people.
    Full { seats_left: i64 },
    /// The ticket's own limit is reached.
    TicketFull { left: i64 },
    /// There is no such event.
    NoSuchEvent,
    /// The ticket is not one of this event's.
    NoSuchTicket,
    /// This email already holds a live place in the event.
    EmailTaken { email: String },
}

/// Apply: hold the seats and the ticket's places, and store the application and its people,
/// in the caller's transaction (roll it back on anything but `Created`). The event and the
/// ticket must belong together (checked here); whether the event takes applications now is
/// the caller's rule.
///
/// The same form sent again is found where it first makes a difference (the seats, the
/// ticket's places, then the application's unique submit key) rather than by a lookup first:
/// each statement here is a round trip to SQLite's writer thread, which every other writer
/// waits behind.
pub async fn apply(c: &mut AnyConnection, a: &NewApplication<'_>, now: i64) -> Result<Applied> {
    let n = a.people.len() as i64;
    let held = sqlx::query(
        "UPDATE events SET seats_taken = seats_taken + $2, updated_at = $3
         WHERE id = $1 AND seats_taken + $2 <= capacity",
    )
    .bind(a.event_id)
    .bind(n)
    .bind(now)
    .execute(&mut *c)
    .await?;
    if held.rows_affected() == 0 {
        // The same form may have taken the last seats meanwhile (on PostgreSQL this request
        // waited for it): a new statement sees it committed.
        if let Some(id) = application_by_submit_key(c, a.event_id, a.submit_key).await? {
            return Ok(Applied::Again { id });
        }
        let left: Option<i64> = sqlx::query_scalar("SELECT capacity - seats_taken FROM events WHERE id = $1")
            .bind(a.event_id)
            .fetch_optional(&mut *c)
            .await?;
        return Ok(match left {
            Some(left) => Applied::Full { seats_left: left.max(0) },
            None => Applied::NoSuchEvent,
        });
    }
    let ticket = sqlx::query(
        "UPDATE ticket_types SET taken = taken + $3
         WHERE id = $1 AND event_id = $2 AND (limit_count IS NULL OR taken + $3 <= limit_count)
         RETURNING price_yen",
    )
    .bind(a.ticket_type_id)
    .bind(a.event_id)
    .bind(n)
    .fetch_optional(&mut *c)
    .await?;
    let Some(ticket) = ticket else {
        // The same form may have taken the ticket's last places.
        if let Some(id) = application_by_submit_key(c, a.event_id, a.submit_key).await? {
            return Ok(Applied::Again { id });
        }
        let left: Option<Option<i64>> =
            sqlx::query_scalar("SELECT limit_count - taken FROM ticket_types WHERE id = $1 AND event_id = $2")
                .bind(a.ticket_type_id)
                .bind(a.event_id)
                .fetch_optional(&mut *c)
                .await?;
        return Ok(match left {
            Some(left) => Applied::TicketFull { left: left.unwrap_or(0).max(0) },
            None => Applied::NoSuchTicket,
        });
    };
    let price: i64 = ticket.get(0);
    let status = match (price, a.status) {
        (0, _) => "applied",
        (_, "awaiting_payment") => "awaiting_payment",
        _ => "applied",
    };
    // DO NOTHING: the same form committed meanwhile by another request (on PostgreSQL this
    // one waited for it) is found below instead of failing the transaction. (When that request
    // took the last seats, the seat update above already answered `Again`.)
    let inserted = sqlx::query(
        "INSERT INTO applications (event_id, ticket_type_id, status, people, amount_yen, access_key, submit_key,
             created_at, updated_at, completed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)
         ON CONFLICT (event_id, submit_key) DO NOTHING RETURNING id",
    )
    .bind(a.event_id)
    .bind(a.ticket_type_id)
    .bind(status)
    .bind(n)
    .bind(price * n)
    .bind(a.access_key)
    .bind(a.submit_key)
    .bind(now)
    .bind(None::<i64>)
    .fetch_optional(&mut *c)
    .await
    .map_err(|e| crate::conflict(e, "application access key"))?;
    let Some(inserted) = inserted else {
        let id = application_by_submit_key(c, a.event_id, a.submit_key).await?;
        return id.map(|id| Applied::Again { id }).ok_or(StoreError::Conflict("application submit key"));
    };
    let id: i64 = inserted.get(0);
    // Everyone in one statement. A person without an email gets no key (a companion not asked
    // for one), so those never clash.
    let mut sql = String::from(
        "INSERT INTO attendees (application_id, event_id, position, name_kanji, name_kana, email, phone, company,
             email_key, created_at) VALUES ",
    );
    for i in 0..a.people.len() {
        // $1 application, $2 event, $3 now, then 7 per person.
        let b = i * 7 + 4;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "($1, $2, ${b}, ${}, ${}, ${}, ${}, ${}, ${}, $3)",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6
        ));
    }
    sql.push_str(" ON CONFLICT (event_id, email_key) DO NOTHING RETURNING position");
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(a.event_id).bind(now);
    for (i, p) in a.people.iter().enumerate() {
        let key = (a.unique_emails && !p.email.trim().is_empty()).then(|| p.email.trim().to_lowercase());
        q = q.bind(i as i64).bind(p.name_kanji).bind(p.name_kana).bind(p.email).bind(p.phone).bind(p.company).bind(key);
    }
    let stored: Vec<i64> = q.fetch_all(&mut *c).await?.iter().map(|r| r.get(0)).collect();
    if let Some(p) = (0..a.people.len()).find(|i| !stored.contains(&(*i as i64))) {
        return Ok(Applied::EmailTaken { email: a.people[p].email.to_string() });
    }
    Ok(Applied::Created { id, free: price == 0 })
}

async fn application_by_submit_key(c: &mut AnyConnection, event_id: i64, submit_key: &str) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar("SELECT id FROM applications WHERE event_id = $1 AND submit_key = $2")
        .bind(event_id)
        .bind(submit_key)
        .fetch_optional(c)
        .await?)
}

/// Why an edit was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditRefused {
    /// 定員 below the people already holding a seat.
    CapacityBelowTaken { taken: i64 },
    /// A ticket's limit below the people already holding it.
    TicketLimitBelowTaken { name: String, taken: i64 },
    /// A ticket applications name (also cancelled ones) cannot be removed; `taken` people hold it.
    TicketInUse { name: String, taken: i64 },
}

/// A ticket as edited: `id` for one that exists, `None` for a new one.
#[derive(Debug, Clone)]
pub struct TicketEdit<'a> {
    pub id: Option<i64>,
    pub ticket: NewTicket<'a>,
}

/// Change the account's event and its tickets (in the order given; existing tickets missing from
/// `tickets` are removed), in the caller's transaction. `Ok(None)` when there is no such event;
/// the caller rolls back on `Ok(Some(Err(_)))`.
pub async fn update(
    c: &mut AnyConnection,
    account: AccountId,
    id: i64,
    e: &EventInput<'_>,
    tickets: &[TicketEdit<'_>],
    now: i64,
) -> Result<Option<std::result::Result<Updated, EditRefused>>> {
    // The event's row locked first: a concurrent edit, delete or application waits, and the
    // tickets read next are the ones this edit replaces.
    if !lock(c, account, id).await? {
        return Ok(None);
    }
    let Some(current) = get(c, account, id).await? else { return Ok(None) };
    let r = sqlx::query(
        "UPDATE events SET title = $3, description = $4, starts_at = $5, ends_at = $6, capacity = $7, apply_from = $8,
             apply_until = $9, companions_max = $10, state = $11, updated_at = $12, cancel_until = $13, payment_note = $14,
             payment_methods = $15, konbini_days = $16
         WHERE id = $1 AND account_id = $2 AND seats_taken <= $7",
    )
    .bind(id)
    .bind(account.0)
    .bind(e.title)
    .bind(e.description)
    .bind(e.starts_at)
    .bind(e.ends_at)
    .bind(e.capacity)
    .bind(e.apply_from)
    .bind(e.apply_until)
    .bind(e.companions_max)
    .bind(e.state.code())
    .bind(now)
    .bind(e.cancel_until)
    .bind(e.payment_note)
    .bind(e.payment_methods)
    .bind(e.konbini_days)
    .execute(&mut *c)
    .await?;
    if r.rows_affected() == 0 {
        let taken: i64 =
            sqlx::query_scalar("SELECT seats_taken FROM events WHERE id = $1").bind(id).fetch_one(&mut *c).await?;
        return Ok(Some(Err(EditRefused::CapacityBelowTaken { taken })));
    }
    for old in &current.tickets {
        if !tickets.iter().any(|t| t.id == Some(old.id)) {
            let gone = sqlx::query(
                "DELETE FROM ticket_types WHERE id = $1 AND taken = 0
                   AND NOT EXISTS (SELECT 1 FROM applications WHERE ticket_type_id = $1)",
            )
            .bind(old.id)
            .execute(&mut *c)
            .await?;
            if gone.rows_affected() == 0 {
                return Ok(Some(Err(EditRefused::TicketInUse { name: old.name.clone(), taken: old.taken })));
            }
        }
    }
    for (i, t) in tickets.iter().enumerate() {
        match t.id.filter(|id| current.tickets.iter().any(|old| old.id == *id)) {
            Some(ticket_id) => {
                let r = sqlx::query(
                    "UPDATE ticket_types SET position = $2, name = $3, price_yen = $4, limit_count = $5
                     WHERE id = $1 AND ($5 IS NULL OR taken <= $5)",
                )
                .bind(ticket_id)
                .bind(i as i64)
                .bind(t.ticket.name)
                .bind(t.ticket.price_yen)
                .bind(t.ticket.limit_count)
                .execute(&mut *c)
                .await?;
                if r.rows_affected() == 0 {
                    let taken: i64 = sqlx::query_scalar("SELECT taken FROM ticket_types WHERE id = $1")
                        .bind(ticket_id)
                        .fetch_one(&mut *c)
                        .await?;
                    return Ok(Some(Err(EditRefused::TicketLimitBelowTaken {
                        name: t.ticket.name.to_string(),
                        taken,
                    })));
                }
            }
            None => insert_ticket(c, id, i as i64, &t.ticket).await?,
        }
    }
    let moved = e.starts_at != current.starts_at;
    let zoom_revision = if moved || e.title != current.title || e.ends_at != current.ends_at {
        follow_event(c, id, e.starts_at - current.starts_at, now).await?
    } else {
        None
    };
    Ok(Some(Ok(Updated { moved, zoom_revision })))
}

/// What an edit changed that others must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Updated {
    /// 開催日時 changed.
    pub moved: bool,
    /// Zoom is in use and must be updated: the revision for the job (queue it in the same
    /// transaction).
    pub zoom_revision: Option<i64>,
}

/// A new draft with the event's contents and tickets (no applications), titled `title`.
pub async fn copy(
    c: &mut AnyConnection,
    account: AccountId,
    id: i64,
    public_key: &str,
    title: &str,
    now: i64,
) -> Result<Option<i64>> {
    let Some(e) = get(c, account, id).await? else { return Ok(None) };
    let methods = e.payment_methods.join(",");
    let input = EventInput {
        title,
        description: &e.description,
        starts_at: e.starts_at,
        ends_at: e.ends_at,
        capacity: e.capacity,
        apply_from: e.apply_from,
        apply_until: e.apply_until,
        cancel_until: e.cancel_until,
        payment_note: &e.payment_note,
        companions_max: e.companions_max,
        payment_methods: &methods,
        konbini_days: e.konbini_days,
        state: EventState::Draft,
    };
    let tickets: Vec<NewTicket> = e
        .tickets
        .iter()
        .map(|t| NewTicket { name: &t.name, price_yen: t.price_yen, limit_count: t.limit_count })
        .collect();
    Ok(Some(create(c, account, public_key, &input, &tickets, now).await?))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Yes,
    NotFound,
    /// Applications that are not cancelled hold it.
    HasApplications(i64),
}

/// Lock the account's event row for the rest of the caller's transaction (an application
/// holding seats updates the same row, so it waits, or is waited for); `false` when there is no
/// such event.
async fn lock(c: &mut AnyConnection, account: AccountId, id: i64) -> Result<bool> {
    let r = sqlx::query("UPDATE events SET updated_at = updated_at WHERE id = $1 AND account_id = $2")
        .bind(id)
        .bind(account.0)
        .execute(c)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Delete the account's event, unless applications that are not cancelled hold it. Run it in
/// a transaction: the event's row is locked first, so an application committed before the lock
/// is counted, and one after it finds no event.
pub async fn delete(c: &mut AnyConnection, account: AccountId, id: i64) -> Result<Deleted> {
    if !lock(c, account, id).await? {
        return Ok(Deleted::NotFound);
    }
    let live: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM applications WHERE event_id = $1 AND status <> 'cancelled'")
            .bind(id)
            .fetch_one(&mut *c)
            .await?;
    if live > 0 {
        return Ok(Deleted::HasApplications(live));
    }
    sqlx::query("DELETE FROM events WHERE id = $1 AND account_id = $2")
        .bind(id)
        .bind(account.0)
        .execute(&mut *c)
        .await?;
    Ok(Deleted::Yes)
}

/// ［Zoom設定］ as saved, with what Zoom holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoomSettings {
    pub event_id: i64,
    pub enabled: bool,
    /// `meeting` or `webinar`.
    pub kind: String,
    pub starts_at: i64,
    pub duration_minutes: i64,
    /// The screen's options as JSON (read by the app).
    pub options: String,
    /// `none`, `pending`, `created`, `failed` or `deleted`.
    pub state: String,
    pub reason: String,
    pub zoom_id: Option<i64>,
    /// The kind of what `zoom_id` names (a meeting stays one when the screen says webinar).
    pub zoom_kind: String,
    pub join_url: String,
    pub passcode: String,
    pub revision: i64,
    pub applied_revision: i64,
}

/// What the organizer saves on ［Zoom設定］.
#[derive(Debug, Clone)]
pub struct ZoomChoice<'a> {
    pub enabled: bool,
    pub kind: &'a str,
    pub starts_at: i64,
    pub duration_minutes: i64,
    pub options: &'a str,
}

const ZOOM_COLUMNS: &str =
    "z.event_id, z.enabled, z.kind, z.starts_at, z.duration_minutes, z.options, z.state, z.reason,
     z.zoom_id, z.zoom_kind, z.join_url, z.passcode, z.revision, z.applied_revision";

fn zoom_row(r: &sqlx::any::AnyRow) -> ZoomSettings {
    ZoomSettings {
        event_id: r.get(0),
        enabled: r.get::<i64, _>(1) != 0,
        kind: r.get(2),
        starts_at: r.get(3),
        duration_minutes: r.get(4),
        options: r.get(5),
        state: r.get(6),
        reason: r.get(7),
        zoom_id: r.get(8),
        zoom_kind: r.get(9),
        join_url: r.get(10),
        passcode: r.get(11),
        revision: r.get(12),
        applied_revision: r.get(13),
    }
}

/// The account's event's ［Zoom設定］, if ever saved.
pub async fn zoom_settings(c: &mut AnyConnection, account: AccountId, event_id: i64) -> Result<Option<ZoomSettings>> {
    let sql = format!(
        "SELECT {ZOOM_COLUMNS} FROM event_zoom z JOIN events e ON e.id = z.event_id
         WHERE z.event_id = $1 AND e.account_id = $2"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(event_id).bind(account.0).fetch_optional(c).await?;
    Ok(row.as_ref().map(zoom_row))
}

/// Save ［Zoom設定］ of the account's event: the choice replaces the last one, the state becomes
/// `pending` and the revision moves on (the caller queues the job in the same transaction).
/// Returns the new revision, or `None` when the event is not the account's.
pub async fn save_zoom_settings(
    c: &mut AnyConnection,
    account: AccountId,
    event_id: i64,
    z: &ZoomChoice<'_>,
    now: i64,
) -> Result<Option<i64>> {
    let owned: Option<i64> = sqlx::query_scalar("SELECT id FROM events WHERE id = $1 AND account_id = $2")
        .bind(event_id)
        .bind(account.0)
        .fetch_optional(&mut *c)
        .await?;
    if owned.is_none() {
        return Ok(None);
    }
    let row = sqlx::query(
        "INSERT INTO event_zoom (event_id, enabled, kind, starts_at, duration_minutes, options, state, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7)
         ON CONFLICT (event_id) DO UPDATE SET enabled = excluded.enabled, kind = excluded.kind,
             starts_at = excluded.starts_at, duration_minutes = excluded.duration_minutes, options = excluded.options,
             state = 'pending', reason = '', revision = event_zoom.revision + 1, updated_at = excluded.updated_at
         RETURNING revision",
    )
    .bind(event_id)
    .bind(i64::from(z.enabled))
    .bind(z.kind)
    .bind(z.starts_at)
    .bind(z.duration_minutes)
    .bind(z.options)
    .bind(now)
    .fetch_one(&mut *c)
    .await?;
    Ok(Some(row.get(0)))
}

/// The event changed in a way Zoom shows (its title, or its 開催日時 moved by `shift_ms`): a
/// Zoom meeting or webinar in use gets a new revision for the job to apply, its start moved by
/// the same amount (所要時間 kept). Runs in the caller's transaction. Returns the new revision,
/// or `None` when Zoom is not in use for the event.
async fn follow_event(c: &mut AnyConnection, event_id: i64, shift_ms: i64, now: i64) -> Result<Option<i64>> {
    let row = sqlx::query(
        "UPDATE event_zoom SET starts_at = starts_at + $2, state = 'pending', reason = '',
             revision = revision + 1, updated_at = $3
         WHERE event_id = $1 AND enabled = 1
         RETURNING revision",
    )
    .bind(event_id)
    .bind(shift_ms)
    .bind(now)
    .fetch_optional(&mut *c)
    .await?;
    Ok(row.map(|r| r.get(0)))
}

/// For the job (no account: it acts for the event's owner): the settings to apply.
pub async fn zoom_settings_for_job(c: &mut AnyConnection, event_id: i64) -> Result<Option<ZoomSettings>> {
    let sql = format!("SELECT {ZOOM_COLUMNS} FROM event_zoom z WHERE z.event_id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(event_id).fetch_optional(c).await?;
    Ok(row.as_ref().map(zoom_row))
}

/// What the job found at Zoom after applying `revision`.
#[derive(Debug, Clone)]
pub struct ZoomOutcome<'a> {
    /// `created`, `failed` or `deleted`.
    pub state: &'a str,
    pub reason: &'a str,
    pub zoom_id: Option<i64>,
    pub zoom_kind: &'a str,
    pub join_url: &'a str,
    pub passcode: &'a str,
}

/// Record the job's outcome for `revision`. The state is set only if no newer save came
/// meanwhile (that save's job reports instead); what Zoom holds is always recorded, so a
/// meeting created for an older revision is updated, never created again. Returns whether the
/// state was set.
pub async fn record_zoom_outcome(
    c: &mut AnyConnection,
    event_id: i64,
    revision: i64,
    o: &ZoomOutcome<'_>,
    now: i64,
) -> Result<bool> {
    let held = o.zoom_id.map(|id| ZoomHeld {
        zoom_id: id,
        zoom_kind: o.zoom_kind,
        join_url: o.join_url,
        passcode: o.passcode,
    });
    record_zoom_held(c, event_id, held.as_ref(), now).await?;
    finish_zoom_revision(c, event_id, revision, o.state, o.reason).await
}

/// A meeting or webinar that exists at Zoom for the event.
#[derive(Debug, Clone)]
pub struct ZoomHeld<'a> {
    pub zoom_id: i64,
    pub zoom_kind: &'a str,
    pub join_url: &'a str,
    pub passcode: &'a str,
}

/// Record what Zoom holds for the event now (`None`: nothing). Written as soon as the job
/// learns it, before any later step that may fail, so that a retry updates instead of creating.
pub async fn record_zoom_held(
    c: &mut AnyConnection,
    event_id: i64,
    held: Option<&ZoomHeld<'_>>,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE event_zoom SET zoom_id = $2, zoom_kind = $3, join_url = $4, passcode = $5, updated_at = $6,
             create_attempted = CASE WHEN $2 IS NULL THEN create_attempted ELSE 0 END
         WHERE event_id = $1",
    )
    .bind(event_id)
    .bind(held.map(|h| h.zoom_id))
    .bind(held.map(|h| h.zoom_kind).unwrap_or(""))
    .bind(held.map(|h| h.join_url).unwrap_or(""))
    .bind(held.map(|h| h.passcode).unwrap_or(""))
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Set the state reached for `revision` (`created`, `failed` or `deleted`), unless a newer save
/// came meanwhile. Returns whether it was set.
pub async fn finish_zoom_revision(
    c: &mut AnyConnection,
    event_id: i64,
    revision: i64,
    state: &str,
    reason: &str,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE event_zoom SET state = $3, reason = $4, applied_revision = $2
         WHERE event_id = $1 AND revision = $2",
    )
    .bind(event_id)
    .bind(revision)
    .bind(state)
    .bind(reason)
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The account's event that holds Zoom meeting or webinar `zoom_id`, with its 開催日時 at Zoom.
pub async fn event_by_zoom_id(c: &mut AnyConnection, account: AccountId, zoom_id: i64) -> Result<Option<(i64, i64)>> {
    let row = sqlx::query(
        "SELECT z.event_id, z.starts_at FROM event_zoom z JOIN events e ON e.id = z.event_id
         WHERE z.zoom_id = $1 AND e.account_id = $2",
    )
    .bind(zoom_id)
    .bind(account.0)
    .fetch_optional(c)
    .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// What Zoom says happened in its own screens: the meeting deleted there (`deleted`: it is no
/// longer held, and the state becomes `failed` with `reason`), or a notice kept beside the
/// state (`reason`, e.g. rescheduled there).
pub async fn record_change_at_zoom(
    c: &mut AnyConnection,
    event_id: i64,
    deleted: bool,
    reason: &str,
    now: i64,
) -> Result<()> {
    let sql = if deleted {
        "UPDATE event_zoom SET zoom_id = NULL, zoom_kind = '', join_url = '', passcode = '', state = 'failed',
             reason = $2, updated_at = $3 WHERE event_id = $1"
    } else {
        "UPDATE event_zoom SET reason = $2, updated_at = $3 WHERE event_id = $1"
    };
    sqlx::query(sql).bind(event_id).bind(reason).bind(now).execute(c).await?;
    Ok(())
}

/// Take the event's Zoom sync for one run until `until` (its lease): `false` while another run
/// holds it. Two runs at once would both find no meeting and both create one.
pub async fn lease_zoom_sync(c: &mut AnyConnection, event_id: i64, now: i64, until: i64) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE event_zoom SET sync_lease_until = $3
         WHERE event_id = $1 AND (sync_lease_until IS NULL OR sync_lease_until < $2)",
    )
    .bind(event_id)
    .bind(now)
    .bind(until)
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Give the lease back.
pub async fn release_zoom_sync(c: &mut AnyConnection, event_id: i64) -> Result<()> {
    sqlx::query("UPDATE event_zoom SET sync_lease_until = NULL WHERE event_id = $1").bind(event_id).execute(c).await?;
    Ok(())
}

/// Before a create is sent: returns whether an earlier create was sent without its answer
/// recorded (then this one may make a second meeting at Zoom). Cleared when a meeting is held.
pub async fn mark_create_attempt(c: &mut AnyConnection, event_id: i64) -> Result<bool> {
    let before: i64 = sqlx::query_scalar("SELECT create_attempted FROM event_zoom WHERE event_id = $1")
        .bind(event_id)
        .fetch_optional(&mut *c)
        .await?
        .unwrap_or(0);
    sqlx::query("UPDATE event_zoom SET create_attempted = 1 WHERE event_id = $1")
        .bind(event_id)
        .execute(&mut *c)
        .await?;
    Ok(before != 0)
}

/// The host's and alternative hosts' emails of the event's meeting or webinar (lower-cased):
/// Zoom refuses them as registrants (3027).
pub async fn record_host_emails(c: &mut AnyConnection, event_id: i64, emails: &[String]) -> Result<()> {
    sqlx::query("UPDATE event_zoom SET host_emails = $2 WHERE event_id = $1")
        .bind(event_id)
        .bind(emails.join(" "))
        .execute(c)
        .await?;
    Ok(())
}

/// See [`record_host_emails`].
pub async fn host_emails(c: &mut AnyConnection, event_id: i64) -> Result<Vec<String>> {
    let s: Option<String> =
        sqlx::query_scalar("SELECT host_emails FROM event_zoom WHERE event_id = $1 AND enabled = 1")
            .bind(event_id)
            .fetch_optional(c)
            .await?;
    Ok(s.unwrap_or_default().split_whitespace().map(str::to_string).collect())
}

/// While `revision` waits (a Zoom daily limit), say why on the event page; the state stays
/// `pending`.
pub async fn note_zoom_wait(c: &mut AnyConnection, event_id: i64, revision: i64, reason: &str) -> Result<()> {
    sqlx::query("UPDATE event_zoom SET reason = $3 WHERE event_id = $1 AND revision = $2 AND state = 'pending'")
        .bind(event_id)
        .bind(revision)
        .bind(reason)
        .execute(&mut *c)
        .await?;
    Ok(())
}
