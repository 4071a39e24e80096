//! The step-delivery dispatcher (job `courses.dispatch`): claims due subscriptions in batches,
//! works out what each is due ([`schedule::due`]), plans the requests ([`fanout::requests`]),
//! stores each request with its retry key and its steps as `sending` (a few requests per
//! transaction), then the subscriptions' next instants, and only then sends them.
//!
//! - A subscription is handled by one dispatcher at a time (a lease on its row; `SKIP LOCKED`
//!   on PostgreSQL), and a step is recorded at most once per subscription.
//! - A request left pending (the process died, or LINE answered 5xx, a timeout or a rate-limit
//!   429) is sent again after its lease with the same retry key; LINE's 409 means it was sent.
//! - A reply has no retry key (LINE refuses one there): it is attempted once. If that attempt
//!   fails, its steps go by push when the reply certainly did not go out; if the process died
//!   during the attempt, whether it went out is unknown, and it is recorded failed rather than
//!   risk a second copy.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use tsunagu_line::message::Message;
use tsunagu_line::{LineError, RetryKey};
use tsunagu_store::courses::{self as store, DueSubscription, StepRow};

use super::{fanout, schedule};
use crate::app::App;
use crate::jobs::{JobError, Outcome};

/// Subscriptions claimed per round.
pub const BATCH: i64 = 500;
/// How long a dispatcher holds what it claimed (subscriptions and the requests it stored): twice
/// the job lease (`jobs.lease_seconds`, 60 s by default), at least 10 s. A push or multicast
/// resent by another dispatcher while the first is still at it carries the same retry key, so
/// LINE answers it 409 rather than delivering it twice; a reply (no retry key) is attempted by
/// whichever dispatcher takes its one attempt first (`take_reply_attempt`). A subscription
/// taken over while its requests are being stored is left to the new holder (`still_held`).
pub fn lease_ms(app: &App) -> i64 {
    (app.config.jobs.lease_seconds as i64 * 2_000).max(10_000)
}
/// How often the courses of an account whose plan has no LINE are looked at again.
const PLAN_RECHECK_MS: i64 = 3_600_000;
/// When a retryable failure is tried again.
const RETRY_MS: i64 = 5_000;

/// What a stored request carries: who, which steps, and the reply token for a reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Body {
    to: Vec<String>,
    steps: Vec<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply_token: Option<String>,
    /// The subscriptions of `to`, in the same order (for a push fallback of a reply).
    subscriptions: Vec<i64>,
}

/// The stored body of a push of `steps` to one LINE user outside any subscription (テスト配信).
pub(crate) fn push_body(to: &str, steps: &[i64]) -> String {
    let body = Body { to: vec![to.to_string()], steps: steps.to_vec(), reply_token: None, subscriptions: Vec::new() };
    serde_json::to_string(&body).expect("a body always serialises")
}

/// Who a stored request went to and which steps it carried.
pub(crate) fn body_parts(json: &str) -> Option<(Vec<String>, Vec<i64>)> {
    serde_json::from_str::<Body>(json).ok().map(|b| (b.to, b.steps))
}

pub(crate) fn schedule_step(s: &StepRow) -> schedule::Step {
    let timing = match s.timing {
        None => schedule::Timing::Immediate,
        Some((day, minute)) => schedule::Timing::At { day: day.max(0) as u32, minute: minute.clamp(0, 1439) as u32 },
    };
    schedule::Step { id: s.id, timing, order: s.position as i32 }
}

/// The steps a subscription that started at `started_at` receives.
pub(crate) fn steps_for(steps: &[StepRow], started_at: i64) -> Vec<schedule::Step> {
    steps
        .iter()
        .filter(|s| s.valid_from <= started_at && s.valid_until.is_none_or(|u| started_at < u))
        .map(schedule_step)
        .collect()
}

/// One run: resend what was left pending, then dispatch due subscriptions until none is due
/// (at most 20 batches), then queue the next run for when something next falls due.
pub async fn run(app: &App, worker: &str) -> Result<Outcome, JobError> {
    resend_stale(app).await?;
    for _ in 0..20 {
        let now = app.now();
        let claimed = {
            let mut tx = app.store.begin().await?;
            let claimed = store::claim_due(&mut tx, app.store.backend(), worker, BATCH, now, lease_ms(app)).await?;
            tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
            claimed
        };
        if claimed.is_empty() {
            break;
        }
        let sends = plan(app, worker, &claimed, now).await?;
        send_all(app, sends).await?;
    }
    let next = {
        let mut c = app.store.read().await?;
        store::next_due(&mut c).await?
    };
    if let Some(at) = next {
        // Not sooner than a second from now: what is due now but held by another dispatcher
        // is that dispatcher's to finish.
        queue_at(app, at.max(app.now() + 1_000)).await?;
    }
    Ok(Outcome::Done)
}

/// Queue a dispatch run now (after a subscription starts).
pub async fn queue(app: &App) -> Result<(), tsunagu_store::StoreError> {
    queue_at(app, app.now()).await
}

/// Queue a dispatch run now on the caller's transaction (wake the workers after commit).
/// Returns whether a run was queued (one due at this instant may be queued already).
pub async fn queue_in(c: &mut tsunagu_store::AnyConnection, app: &App) -> Result<bool, tsunagu_store::StoreError> {
    let now = app.now();
    let key = format!("{DISPATCH}@{now}");
    Ok(crate::jobs::enqueue(c, app, DISPATCH, &serde_json::json!({}), Some(&key), 0).await?.is_some())
}

/// Queue a dispatch run at `at`. Runs are keyed by their instant, so a run wanted sooner is
/// not swallowed by one queued for later; runs at the same instant are one.
async fn queue_at(app: &App, at: i64) -> Result<(), tsunagu_store::StoreError> {
    let mut c = app.store.conn().await?;
    let key = format!("{DISPATCH}@{at}");
    crate::jobs::enqueue(&mut c, app, DISPATCH, &serde_json::json!({}), Some(&key), at - app.now()).await?;
    drop(c);
    crate::jobs::wake(app);
    Ok(())
}

pub const DISPATCH: &str = "courses.dispatch";

/// Recipients of one channel in a round, and each one's subscription by LINE user.
type Group = (Vec<fanout::Recipient>, HashMap<String, i64>);

/// Rows of `step_deliveries` a request records.
fn carried_rows(carried: &(Vec<i64>, Vec<i64>)) -> usize {
    carried.0.len() * carried.1.len()
}

/// Store what the claimed subscriptions are due, with their requests, and release them.
/// Returns the requests to send now, in order.
async fn plan(app: &App, worker: &str, claimed: &[DueSubscription], now: i64) -> Result<Vec<store::SendRow>, JobError> {
    // Courses of accounts whose plan no longer has LINE (see `PLAN_RECHECK_MS`).
    let mut stopped: HashMap<i64, tsunagu_core::AccountId> = HashMap::new();
    let (courses, handled, in_flight) = {
        let mut c = app.store.read().await?;
        let ids: Vec<i64> = claimed.iter().map(|d| d.course_id).collect::<HashSet<_>>().into_iter().collect();
        // Two queries for the round's courses, however many there are.
        let mut courses: HashMap<i64, (String, Option<String>, Vec<StepRow>)> = HashMap::new();
        for course in store::dispatch_courses(&mut c, &ids).await? {
            if !course.plan.is_some_and(|p| p.allows(tsunagu_core::Feature::LineLink)) {
                stopped.insert(course.id, course.account_id);
                continue;
            }
            courses.insert(course.id, (course.time_zone, course.line_channel_id, Vec::new()));
        }
        let live: Vec<i64> = courses.keys().copied().collect();
        for step in store::steps_of_courses(&mut c, &live).await? {
            if let Some(course) = courses.get_mut(&step.course_id) {
                course.2.push(step);
            }
        }
        let ids: Vec<i64> = claimed.iter().map(|d| d.id).collect();
        let mut handled: HashSet<(i64, i64)> = HashSet::new();
        for chunk in ids.chunks(500) {
            handled.extend(store::handled(&mut c, chunk).await?);
        }
        let in_flight: HashSet<i64> = store::in_flight(&mut c, &ids).await?.into_iter().collect();
        (courses, handled, in_flight)
    };
    // Everything is worked out before the transaction, which then only writes (on SQLite it
    // holds the one write lock that the webhook intake waits for).
    let mut skipped: Vec<(i64, Vec<i64>)> = Vec::new();
    let mut zones: HashMap<&str, jiff::tz::TimeZone> = HashMap::new();
    // Per channel: who is due what. A LINE user may be a student of two courses on one
    // channel: their second subscription goes in a second group (key `n`), so that within a
    // group a user is one subscription.
    let mut by_channel: HashMap<(String, usize), Group> = HashMap::new();
    let mut groups: HashMap<(&str, &str), usize> = HashMap::new();
    // Subscriptions to release, by their next delivery (released together below).
    let mut releases: HashMap<Option<i64>, Vec<i64>> = HashMap::new();
    for d in claimed {
        if in_flight.contains(&d.id) {
            // A request with its earlier steps is not settled yet (being retried, or left by a
            // process that died): nothing later goes before it. Looked at again in a while.
            releases.entry(Some(now + RETRY_MS)).or_default().push(d.id);
            continue;
        }
        if stopped.contains_key(&d.course_id) {
            releases.entry(Some(now + PLAN_RECHECK_MS)).or_default().push(d.id);
            continue;
        }
        let Some((tz, channel, steps)) = courses.get(&d.course_id) else {
            releases.entry(None).or_default().push(d.id);
            continue;
        };
        let zone =
            zones.entry(tz.as_str()).or_insert_with(|| jiff::tz::TimeZone::get(tz).unwrap_or(jiff::tz::TimeZone::UTC));
        let mine = steps_for(steps, d.started_at);
        let is_handled = |step: i64| handled.contains(&(d.id, step));
        let due = schedule::due(&mine, d.started_at, zone, &is_handled, d.resumed_at, now);
        if !due.skip.is_empty() {
            skipped.push((d.id, due.skip.clone()));
        }
        match channel {
            Some(channel) if !due.send.is_empty() && !d.line_user_id.is_empty() => {
                let n = groups.entry((channel.as_str(), d.line_user_id.as_str())).or_insert(0);
                let (recipients, subs) = by_channel.entry((channel.clone(), *n)).or_default();
                *n += 1;
                recipients.push(fanout::Recipient {
                    user_id: d.line_user_id.clone(),
                    steps: due.send.clone(),
                    reply_token: d.reply_token.clone(),
                });
                subs.insert(d.line_user_id.clone(), d.id);
                releases.entry(due.next_at).or_default().push(d.id);
            }
            // No channel linked (yet): the steps wait, and are looked at again in a while.
            None if !due.send.is_empty() => {
                releases.entry(Some(now + lease_ms(app))).or_default().push(d.id);
            }
            _ => {
                releases.entry(due.next_at).or_default().push(d.id);
            }
        }
    }
    // Every request of the round, to be stored in multi-row statements (below).
    let mut new_sends = Vec::new();
    let mut carried: Vec<(Vec<i64>, Vec<i64>)> = Vec::new();
    for ((channel, _), (recipients, subs)) in by_channel {
        for request in fanout::requests(&recipients) {
            let (method, to, token) = match &request {
                fanout::Request::Reply { token, user_id, .. } => ("reply", vec![user_id.clone()], Some(token.clone())),
                fanout::Request::Push { user_id, .. } => ("push", vec![user_id.clone()], None),
                fanout::Request::Multicast { user_ids, .. } => ("multicast", user_ids.clone(), None),
            };
            let subscriptions: Vec<i64> = to.iter().filter_map(|u| subs.get(u).copied()).collect();
            let body = Body { to, steps: request.steps().to_vec(), reply_token: token, subscriptions };
            let json = serde_json::to_string(&body).map_err(|e| JobError::Permanent(e.to_string()))?;
            new_sends.push(store::NewSend {
                channel_id: channel.clone(),
                method,
                retry_key: (method != "reply").then(|| RetryKey::new(now).key),
                body: json,
            });
            carried.push((body.subscriptions, body.steps));
        }
    }
    // The requests first, with their steps as `sending`, a few at a time (at most 25 requests
    // and 500 delivery rows, or one request however many rows it has): each transaction holds
    // SQLite's one write lock, which the webhook intake waits for, so none is long. If the
    // process dies between them, the subscriptions stay held until their lease runs out; the
    // next claim finds the stored steps handled and plans only the rest, and the stored
    // requests are sent again by `resend_stale` with their retry keys.
    let mut sends = Vec::with_capacity(new_sends.len());
    let mut start = 0;
    while start < new_sends.len() {
        let (mut end, mut rows) = (start, 0);
        while end < new_sends.len() && (end == start || (end - start < 25 && rows + carried_rows(&carried[end]) <= 500))
        {
            rows += carried_rows(&carried[end]);
            end += 1;
        }
        let mut tx = app.store.begin().await?;
        let mine: Vec<i64> = carried[start..end].iter().flat_map(|c| c.0.iter().copied()).collect();
        if !store::still_held(&mut tx, worker, &mine).await? {
            // The lease ran out and another dispatcher took some of them over: it plans them
            // (it finds what was stored here handled). What was stored is sent; nothing more.
            tracing::warn!(worker, "a dispatcher's subscriptions were taken over while it stored their requests");
            return Ok(sends);
        }
        let ids = store::insert_sends(&mut tx, &new_sends[start..end], now + lease_ms(app), now).await?;
        let mut sending = Vec::with_capacity(rows);
        for (id, (subscriptions, steps)) in ids.iter().zip(&carried[start..end]) {
            for sub in subscriptions {
                sending.extend(steps.iter().map(|step| (*sub, *step, *id)));
            }
        }
        store::record_sending(&mut tx, &sending, now).await?;
        tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
        for (id, s) in ids.into_iter().zip(&new_sends[start..end]) {
            sends.push(store::SendRow {
                id,
                channel_id: s.channel_id.clone(),
                method: s.method.into(),
                retry_key: s.retry_key.clone(),
                body: s.body.clone(),
                attempts: 0,
                created_at: now,
            });
        }
        start = end;
    }
    // Then the subscriptions are released to their next delivery.
    let mut tx = app.store.begin().await?;
    for (subscription, steps) in &skipped {
        store::record_handled(&mut tx, *subscription, steps, "skipped", None, now).await?;
    }
    for (next_at, ids) in &releases {
        store::release_many(&mut tx, ids, worker, *next_at, now).await?;
    }
    for account in stopped.values().collect::<HashSet<_>>() {
        tell_plan_stopped(app, &mut tx, *account, now).await?;
    }
    tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
    Ok(sends)
}

/// The instructor's plan no longer has LINE: deliveries stop (looked at again every
/// [`PLAN_RECHECK_MS`], so they go on once the plan has LINE again), and the instructor is told
/// by mail, once a month at most.
async fn tell_plan_stopped(
    app: &App,
    c: &mut tsunagu_store::AnyConnection,
    account: tsunagu_core::AccountId,
    now: i64,
) -> Result<(), JobError> {
    let Some(a) = tsunagu_store::accounts::get(c, account).await? else { return Ok(()) };
    let tz = jiff::tz::TimeZone::get("Asia/Tokyo").unwrap_or(jiff::tz::TimeZone::UTC);
    let month = jiff::Timestamp::from_millisecond(now).unwrap_or_default().to_zoned(tz).strftime("%Y-%m").to_string();
    let body = format!(
        "{} 様\n\nご契約のプラン（{}プラン）では公式LINE連携とステップ配信をご利用いただけないため、受講生への LINE のステップ配信を止めています。\n\n\
         ビジネスプランまたはスペシャルプランに変更すると、配信を再開します（止めていた間に配信予定だったメッセージから順にお届けします）。\n\nTsunagu",
        a.display_name,
        a.plan.label()
    );
    crate::mail::enqueue(
        c,
        app,
        &crate::mail::OutgoingMail {
            account_id: Some(a.id),
            cause: &format!("line-plan-stopped:{}:{month}", a.id),
            to: &a.email,
            subject: "【Tsunagu】ご契約のプランでは LINE のステップ配信をご利用いただけないため、配信を止めています",
            body: &body,
            calendar: None,
        },
    )
    .await?;
    tracing::warn!(account_id = %a.id, "LINE deliveries stopped: the plan has no LINE");
    Ok(())
}

/// Resend requests whose lease ran out.
async fn resend_stale(app: &App) -> Result<(), JobError> {
    loop {
        let stale = {
            let mut tx = app.store.begin().await?;
            let s = store::claim_stale_sends(&mut tx, app.store.backend(), 200, app.now(), lease_ms(app)).await?;
            tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
            s
        };
        if stale.is_empty() {
            return Ok(());
        }
        send_all(app, stale).await?;
    }
}

/// Requests in flight at once. Each waits for its channel's rate limit in the LINE client, so
/// this bounds only how many wait for LINE's answer together.
const CONCURRENCY: usize = 32;

/// The stored requests in lanes that share no recipient, each lane in the given order. A
/// recipient's requests are all in one lane, so sending each lane in order keeps every
/// student's order while different lanes go at once.
fn lanes(sends: Vec<store::SendRow>) -> Vec<Vec<store::SendRow>> {
    let mut lanes: Vec<Vec<store::SendRow>> = Vec::new();
    let mut users: Vec<Vec<String>> = Vec::new();
    let mut owner: HashMap<String, usize> = HashMap::new();
    for s in sends {
        let to = serde_json::from_str::<Body>(&s.body).map(|b| b.to).unwrap_or_default();
        let mut mine: Vec<usize> = to.iter().filter_map(|u| owner.get(u).copied()).collect();
        mine.sort_unstable();
        mine.dedup();
        let lane = match mine.first() {
            None => {
                lanes.push(Vec::new());
                users.push(Vec::new());
                lanes.len() - 1
            }
            Some(&first) => {
                // The request joins recipients of several lanes: they become one. Requests of
                // different lanes share no recipient, so putting one lane after another keeps
                // each recipient's order.
                for &other in &mine[1..] {
                    let moved = std::mem::take(&mut lanes[other]);
                    lanes[first].extend(moved);
                    for u in std::mem::take(&mut users[other]) {
                        owner.insert(u.clone(), first);
                        users[first].push(u);
                    }
                }
                first
            }
        };
        for u in to {
            if owner.insert(u.clone(), lane).is_none() {
                users[lane].push(u);
            }
        }
        lanes[lane].push(s);
    }
    lanes.retain(|l| !l.is_empty());
    lanes
}

/// What every request of one [`send_all`] shares.
struct Batch {
    channels: HashMap<String, Option<tsunagu_line::Channel>>,
    messages: HashMap<i64, Message>,
    /// Channels LINE refused for their monthly limit during this batch.
    paused: std::sync::Mutex<HashSet<String>>,
    /// Pushes and multicasts LINE accepted, recorded a hundred at a time.
    sent: std::sync::Mutex<Vec<i64>>,
}

/// What became of a request: its recipients may have their next one (it went out, or failed
/// for good), or it is still to go (retried later, sent again by push, paused), and nothing
/// of theirs may overtake it.
#[derive(PartialEq, Eq)]
enum Sent {
    Settled,
    Later,
}

impl Batch {
    /// Record accepted requests as sent once a hundred have gathered (`all`: whatever is left).
    async fn record_sent(&self, app: &App, all: bool) -> Result<(), JobError> {
        let ids = {
            let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
            if sent.is_empty() || (!all && sent.len() < 100) {
                return Ok(());
            }
            std::mem::take(&mut *sent)
        };
        // A hundred per transaction, so that none holds SQLite's write lock long.
        for chunk in ids.chunks(100) {
            let mut tx = app.store.begin().await?;
            store::settle_sent_many(&mut tx, chunk, app.now()).await?;
            tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
        }
        Ok(())
    }
}

/// Send stored requests: a recipient's in the given order, different recipients' at once (see
/// [`lanes`]). A retryable failure leaves the request pending for another attempt with the
/// same retry key in [`RETRY_MS`], which the run after this one makes (it is queued for the
/// earliest pending lease), spending no job attempt; the rest of its lane waits behind it.
/// Accepted pushes and multicasts are recorded as sent a hundred at a time; if the process
/// dies before that, they are sent again with their retry key and LINE answers 409 (already
/// accepted), which records them as sent. An accepted reply (no retry key) is recorded at once.
async fn send_all(app: &App, sends: Vec<store::SendRow>) -> Result<(), JobError> {
    use futures_util::StreamExt;
    let mut channels: HashMap<String, Option<tsunagu_line::Channel>> = HashMap::new();
    let mut step_ids: HashSet<i64> = HashSet::new();
    for s in &sends {
        if !channels.contains_key(&s.channel_id) {
            let known =
                crate::line::known_channel(app, &s.channel_id).await.map_err(|e| JobError::Retry(e.to_string()))?;
            let ch = known.map(|k| tsunagu_line::Channel {
                id: s.channel_id.clone(),
                secret: k.secret,
                token_kind: Default::default(),
            });
            channels.insert(s.channel_id.clone(), ch);
        }
        if let Ok(body) = serde_json::from_str::<Body>(&s.body) {
            step_ids.extend(body.steps);
        }
    }
    let messages = messages(app, &step_ids.into_iter().collect::<Vec<_>>()).await?;
    let batch = Batch { channels, messages, paused: Default::default(), sent: Default::default() };
    let results: Vec<Result<(), JobError>> = futures_util::stream::iter(lanes(sends))
        .map(|lane| {
            let batch = &batch;
            async move {
                let mut held = 0;
                for s in lane {
                    if held > 0 {
                        hold_back(app, batch, &s, held).await?;
                        held += 1;
                    } else if send_one(app, batch, s).await? == Sent::Later {
                        held = 1;
                    }
                    batch.record_sent(app, false).await?;
                }
                Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    batch.record_sent(app, true).await?;
    results.into_iter().collect()
}

/// A request behind one of its recipients' that is still to go: it waits for that one, the
/// `n`th in line (a millisecond apart, so they are sent again in order), or pauses with its
/// channel.
async fn hold_back(app: &App, batch: &Batch, s: &store::SendRow, n: i64) -> Result<(), JobError> {
    if batch.paused.lock().unwrap_or_else(|p| p.into_inner()).contains(&s.channel_id) {
        return super::quota::pause(app, &s.channel_id, s.id).await;
    }
    let mut c = app.store.conn().await?;
    store::retry_send_at(&mut c, s.id, app.now() + RETRY_MS + n).await?;
    Ok(())
}

/// Send one stored request and record what LINE answered.
async fn send_one(app: &App, batch: &Batch, s: store::SendRow) -> Result<Sent, JobError> {
    let now = app.now();
    if batch.paused.lock().unwrap_or_else(|p| p.into_inner()).contains(&s.channel_id) {
        // LINE refused this channel's requests for its monthly limit a moment ago: the rest
        // wait with the pause rather than go out of order around the refused ones.
        super::quota::pause(app, &s.channel_id, s.id).await?;
        return Ok(Sent::Later);
    }
    let Some(ch) = batch.channels.get(&s.channel_id).cloned().flatten() else {
        settle(app, s.id, "failed", "公式LINEの連携が解除されたため送信できませんでした。", now).await?;
        return Ok(Sent::Settled);
    };
    let body: Body = serde_json::from_str(&s.body).map_err(|e| JobError::Permanent(e.to_string()))?;
    let objects: Vec<Message> = body.steps.iter().filter_map(|step| batch.messages.get(step).cloned()).collect();
    if objects.is_empty() {
        settle(app, s.id, "failed", "メッセージが削除されたため送信しませんでした。", now).await?;
        return Ok(Sent::Settled);
    }
    let key = s.retry_key.clone().map(|key| RetryKey { key, created_at_ms: s.created_at });
    let result = match (s.method.as_str(), &key) {
        ("reply", _) => {
            if s.attempts > 0 {
                // The process died during the one attempt: it may have gone out.
                let why = "返信の送信中に処理が中断されたため、届いたかどうか確認できませんでした。";
                settle(app, s.id, "failed", why, now).await?;
                return Ok(Sent::Settled);
            }
            let mut c = app.store.conn().await?;
            let took = store::take_reply_attempt(&mut c, s.id).await?;
            drop(c);
            if !took {
                // Another dispatcher took its one attempt since this one read it.
                return Ok(Sent::Later);
            }
            let token = body.reply_token.clone().unwrap_or_default();
            match app.line.reply(&ch, &token, &objects).await {
                Ok(sent) => Ok(sent),
                // Refused, so nothing went out (the token had lapsed, or a rate limit):
                // the same steps go by push instead. A 5xx or a timeout leaves it unknown.
                Err(LineError::BadRequest { .. }) | Err(LineError::RateLimited) => {
                    fallback_to_push(app, &s, &body, now).await?;
                    return Ok(Sent::Later);
                }
                Err(e) => Err(e),
            }
        }
        ("multicast", Some(key)) => app.line.multicast(&ch, &body.to, &objects, key).await,
        (_, Some(key)) => app.line.push(&ch, &body.to[0], &objects, key).await,
        (_, None) => {
            settle(app, s.id, "failed", "送信の記録が壊れているため送信しませんでした。", now).await?;
            return Ok(Sent::Settled);
        }
    };
    Ok(match result {
        // A reply has no retry key: recorded at once, so that nothing can take it for unsent.
        Ok(_) if s.method == "reply" => {
            settle(app, s.id, "sent", "", app.now()).await?;
            Sent::Settled
        }
        Ok(_) => {
            batch.sent.lock().unwrap_or_else(|p| p.into_inner()).push(s.id);
            Sent::Settled
        }
        // Nothing was sent: the steps wait, and the channel pauses (see `quota`).
        Err(LineError::MonthlyLimit) => {
            tracing::warn!(send_id = s.id, channel_id = %s.channel_id, "LINE monthly limit");
            batch.paused.lock().unwrap_or_else(|p| p.into_inner()).insert(s.channel_id.clone());
            super::quota::pause(app, &s.channel_id, s.id).await?;
            Sent::Later
        }
        Err(e) if retryable(&e) => {
            tracing::warn!(send_id = s.id, method = %s.method, error = %e, "LINE send will be retried");
            let mut c = app.store.conn().await?;
            store::retry_send_at(&mut c, s.id, app.now() + RETRY_MS).await?;
            Sent::Later
        }
        Err(e) => {
            settle(app, s.id, "failed", &reason_ja(&e), app.now()).await?;
            Sent::Settled
        }
    })
}

/// A reply LINE refused goes by push: the stored request becomes a push with a retry key, due
/// at once, in its place (its id, so it keeps its order among its recipient's requests; its
/// steps stay recorded against it). Only a request still pending is changed: one settled
/// meanwhile by another dispatcher is not sent again.
async fn fallback_to_push(app: &App, s: &store::SendRow, body: &Body, now: i64) -> Result<(), JobError> {
    let push = Body {
        to: body.to.clone(),
        steps: body.steps.clone(),
        reply_token: None,
        subscriptions: body.subscriptions.clone(),
    };
    let json = serde_json::to_string(&push).map_err(|e| JobError::Permanent(e.to_string()))?;
    let key = RetryKey::new(now).key;
    let mut c = app.store.conn().await?;
    store::reply_to_push(&mut c, s.id, &key, &json, now).await?;
    Ok(())
}

async fn settle(app: &App, id: i64, state: &str, reason: &str, now: i64) -> Result<(), JobError> {
    let mut c = app.store.conn().await?;
    store::settle_send(&mut c, id, state, reason, now).await?;
    Ok(())
}

fn retryable(e: &LineError) -> bool {
    matches!(
        e,
        LineError::Server { .. }
            | LineError::Timeout
            | LineError::RateLimited
            | LineError::InvalidToken
            | LineError::LimitsUnavailable { .. }
    )
}

/// Why a request failed for good, for the delivery log.
fn reason_ja(e: &LineError) -> String {
    match e {
        LineError::MonthlyLimit => "今月の送信数の上限に達したため送信できませんでした。".into(),
        LineError::RetryKeyExpired => "24時間以上送信できなかったため、二重送信を避けて送信を中止しました。".into(),
        LineError::Forbidden { .. } => "この公式LINEのプランではこの送信方法を利用できません。".into(),
        LineError::BadChannelCredentials => "チャネルIDまたはチャネルシークレットが正しくありません。".into(),
        LineError::Message(m) => format!("メッセージが LINE の規則に合いません（{m:?}）。"),
        other => format!("LINE が送信を受け付けませんでした（{other}）。"),
    }
}

/// The LINE message of each step that still exists and can be sent.
async fn messages(app: &App, step_ids: &[i64]) -> Result<HashMap<i64, Message>, JobError> {
    let mut c = app.store.read().await?;
    let mut out = HashMap::new();
    let mut media: HashMap<i64, Option<tsunagu_store::media::MediaFile>> = HashMap::new();
    for step in store::steps_by_id(&mut c, step_ids).await? {
        if step.kind == "text" {
            out.insert(step.id, Message::text(step.body));
            continue;
        }
        let Some(id) = step.media_id else { continue };
        let m = match media.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(tsunagu_store::media::by_id(&mut c, id).await?),
        };
        let Some(m) = m else { continue };
        let url = |name: &str| crate::media::store::url(&app.config, name);
        let message = match step.kind.as_str() {
            "image" => {
                Message::Image { original_content_url: url(&m.file_name), preview_image_url: url(&m.preview_name) }
            }
            "video" => Message::Video {
                original_content_url: url(&m.file_name),
                preview_image_url: url(&m.preview_name),
                tracking_id: None,
            },
            "audio" => Message::Audio { original_content_url: url(&m.file_name), duration: m.duration_ms.unwrap_or(0) },
            _ => continue,
        };
        out.insert(step.id, message);
    }
    Ok(out)
}

/// The courses feature's job kinds: the dispatcher, which queues its own next run for when
/// something next falls due, and the resumption after a monthly-limit pause.
pub fn job_kinds() -> Vec<crate::jobs::JobKind> {
    vec![
        crate::jobs::JobKind::new(DISPATCH, std::time::Duration::from_secs(600), |app, worker, _job| async move {
            run(&app, &worker).await
        }),
        crate::jobs::JobKind::new(
            super::quota::RESUME,
            std::time::Duration::from_secs(60),
            |app, _worker, job| async move { super::quota::run(&app, &job).await },
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, valid_from: i64, valid_until: Option<i64>) -> StepRow {
        StepRow {
            id,
            course_id: 1,
            kind: "text".into(),
            body: String::new(),
            media_id: None,
            timing: None,
            position: 1,
            valid_from,
            valid_until,
        }
    }

    #[test]
    fn a_step_reaches_the_subscriptions_started_in_its_range() {
        let rows = [row(1, 0, None), row(2, 0, Some(100)), row(3, 100, None)];
        let ids = |start| steps_for(&rows, start).iter().map(|s| s.id).collect::<Vec<_>>();
        assert_eq!(ids(50), vec![1, 2], "the old version for those who started before the edit");
        assert_eq!(ids(100), vec![1, 3], "the new version from the edit on");
    }

    fn send(id: i64, to: &[&str]) -> store::SendRow {
        let body = Body {
            to: to.iter().map(|u| u.to_string()).collect(),
            steps: vec![id],
            reply_token: None,
            subscriptions: Vec::new(),
        };
        store::SendRow {
            id,
            channel_id: "c".into(),
            method: if to.len() > 1 { "multicast" } else { "push" }.into(),
            retry_key: None,
            body: serde_json::to_string(&body).unwrap(),
            attempts: 0,
            created_at: 0,
        }
    }

    #[test]
    fn a_recipients_requests_share_a_lane_in_order_and_others_go_apart() {
        let sends = vec![
            send(1, &["a"]),
            send(2, &["b"]),
            send(3, &["c"]),
            send(4, &["a"]),
            // Joins b's and c's lanes: b's and c's requests before it stay before it.
            send(5, &["b", "c", "d"]),
            send(6, &["d"]),
            send(7, &["e"]),
        ];
        let lanes: Vec<Vec<i64>> = lanes(sends).iter().map(|l| l.iter().map(|s| s.id).collect()).collect();
        assert_eq!(lanes, vec![vec![1, 4], vec![2, 3, 5, 6], vec![7]]);
    }
}
