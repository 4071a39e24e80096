//! `POST /line/webhook/{channel_id}` (NOTES §4). The signature is checked on the raw body, in
//! constant time, before anything parses it: a bad or missing one gets 401 and nothing is
//! stored. A good request is stored durably — each event once, deduplicated by
//! `webhookEventId`, so a redelivery is recognised — and answered 200 once committed. Its
//! effects (the friend list, see [`super::events`]) are applied in the same transaction, except
//! when the database refused part of its batch or its channel still has events waiting for the
//! `line.events` job: then they are stored unapplied and the job applies them, in event-time
//! order with the ones before. Unknown event types are kept and ignored.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tsunagu_line::webhook::{CallbackRequest, EventInfo};
use tsunagu_store::line::{self as store, NewEvent};

use crate::app::SharedApp;
use crate::jobs::{self, kinds};

fn answer(status: StatusCode, message: &str) -> Response {
    (status, [("content-type", "application/json")], format!("{{\"message\":\"{message}\"}}")).into_response()
}

pub async fn receive(
    State(app): State<SharedApp>,
    Path(channel_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(signature) = headers.get("x-line-signature").and_then(|v| v.to_str().ok()) else {
        return answer(StatusCode::UNAUTHORIZED, "missing signature");
    };
    let channel = match super::known_channel(&app, &channel_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return answer(StatusCode::NOT_FOUND, "unknown channel"),
        Err(e) => {
            tracing::error!(channel_id, error = %e, "line channel lookup failed");
            return answer(StatusCode::SERVICE_UNAVAILABLE, "try again");
        }
    };
    if !tsunagu_line::signature::verify(&channel.secret, &body, signature) {
        tracing::warn!(channel_id, "line webhook with a bad signature refused");
        return answer(StatusCode::UNAUTHORIZED, "bad signature");
    }
    let request: CallbackRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(channel_id, error = %e, "signed line webhook is not valid JSON");
            return answer(StatusCode::BAD_REQUEST, "malformed body");
        }
    };
    if request.events.is_empty() {
        // LINE's connectivity check.
        return answer(StatusCode::OK, "ok");
    }
    match intake(&app).submit(channel_id.clone(), request).await {
        Ok(_) => answer(StatusCode::OK, "ok"),
        Err(Refused::Data(e)) => {
            tracing::warn!(channel_id, error = %e, "signed line webhook refused by the database as invalid data");
            answer(StatusCode::BAD_REQUEST, "invalid data")
        }
        Err(e) => {
            // Not stored: LINE redelivers (when enabled) on a non-2xx answer.
            tracing::error!(channel_id, error = %e, "line webhook could not be stored");
            answer(StatusCode::SERVICE_UNAVAILABLE, "try again")
        }
    }
}

/// The running intake, started on first use and again should its writer task have ended.
fn intake(app: &SharedApp) -> std::sync::Arc<Intake> {
    let mut slot = app.features.get::<super::LineState>().intake.lock().unwrap_or_else(|p| p.into_inner());
    match slot.as_ref() {
        Some(i) if i.is_running() => i.clone(),
        _ => {
            let i = std::sync::Arc::new(Intake::start(app));
            *slot = Some(i.clone());
            i
        }
    }
}

/// Group commit: requests are handed to one writer task, which stores and applies whatever has
/// queued up meanwhile in a single transaction, then answers each. Every 200 still means
/// "stored and committed"; under load many requests share one commit instead of queueing for
/// the database's write lock one by one. Should the database refuse a request, the batch is
/// written again with each request under a savepoint of its own: the refused one is answered
/// alone and the others of its batch are still stored, for the `line.events` job to apply.
pub struct Intake {
    tx: tokio::sync::mpsc::Sender<Pending>,
}

struct Pending {
    channel_id: String,
    request: CallbackRequest,
    done: tokio::sync::oneshot::Sender<Result<usize, Refused>>,
}

/// Why a request was not stored.
#[derive(Debug, Clone)]
pub enum Refused {
    /// The database refused this request's data (PostgreSQL's class 22, e.g. `\u0000` in a
    /// text): retrying it cannot help, so it is answered 400.
    Data(String),
    /// Anything else (database unreachable, intake restarting): answered 503, LINE redelivers.
    Unavailable(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Data(m) => write!(f, "refused data: {m}"),
            Refused::Unavailable(m) => write!(f, "{m}"),
        }
    }
}

/// Requests stored per transaction at most.
const BATCH: usize = 256;

impl Intake {
    pub(crate) fn start(app: &SharedApp) -> Intake {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Pending>(4 * BATCH);
        // A weak handle: the task ends with the app (its sender lives in the app).
        let weak = std::sync::Arc::downgrade(app);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let Some(app) = weak.upgrade() else { break };
                let (requests, dones): (Vec<(String, CallbackRequest)>, Vec<_>) =
                    batch.drain(..).map(|p| ((p.channel_id, p.request), p.done)).unzip();
                let n = dones.len();
                // Each batch is stored by a task of its own: should it panic, its requests are
                // answered 503 and this loop goes on with the next batch.
                let stored = tokio::spawn(async move {
                    let (answers, queued) = store_batch(&app, &requests).await?;
                    // Only a newly queued job needs a worker: a queued one will be claimed anyway.
                    if queued {
                        jobs::wake(&app);
                    }
                    Ok::<_, anyhow::Error>(answers)
                })
                .await;
                let answers: Vec<Result<usize, Refused>> = match stored {
                    Ok(Ok(answers)) => answers,
                    Ok(Err(e)) => vec![Err(Refused::Unavailable(format!("{e:#}"))); n],
                    Err(e) => {
                        tracing::error!(error = %e, "the line webhook writer failed; its batch is answered 503");
                        vec![Err(Refused::Unavailable("intake writer failed".into())); n]
                    }
                };
                for (done, a) in dones.into_iter().zip(answers) {
                    let _ = done.send(a);
                }
            }
        });
        Intake { tx }
    }

    /// Whether the writer task still takes requests.
    pub(crate) fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    pub(crate) async fn submit(&self, channel_id: String, request: CallbackRequest) -> Result<usize, Refused> {
        let (done, wait) = tokio::sync::oneshot::channel();
        let stopped = || Refused::Unavailable("intake stopped".to_string());
        self.tx.send(Pending { channel_id, request, done }).await.map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?
    }
}

/// Store every request's new events (each once) and apply them, all in one transaction: each
/// channel's, unless it has events waiting for the `line.events` job, whose order they join
/// (stored unapplied, and a job queued for the channel). If the database refuses any of it, the
/// transaction is rolled back and the requests are written again each under a savepoint of
/// its own, so that only the refused ones fail; their events are then all stored unapplied.
/// A `line.events` job is queued (due `line.events_delay_ms` later; a no-op when one is queued
/// already) for each channel left with unapplied events. Returns each request's answer and
/// whether a job was queued (workers are woken only then), or `Err` when the transaction itself
/// cannot begin or commit.
async fn store_batch(
    app: &SharedApp,
    batch: &[(String, CallbackRequest)],
) -> anyhow::Result<(Vec<Result<usize, Refused>>, bool)> {
    let now = app.now();
    let mut tx = app.store.begin().await?;
    match store_and_apply(&mut tx, batch, now).await {
        Ok(Stored { answers, applied, waiting, due }) => {
            let mut queued = queue_jobs(&mut tx, app, &waiting).await?;
            if due > 0 {
                queued |= crate::courses::dispatch::queue_in(&mut tx, app).await?;
            }
            tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
            app.metrics.add("line_events_applied", applied as u64);
            return Ok((answers, queued));
        }
        Err(e) => {
            tracing::warn!(error = %e, requests = batch.len(), "a line webhook batch was refused; storing its requests one by one");
            tx.rollback().await.map_err(tsunagu_store::StoreError::from)?;
        }
    }
    let mut tx = app.store.begin().await?;
    let mut answers = Vec::with_capacity(batch.len());
    let mut waiting: Vec<&str> = Vec::new();
    for (channel_id, request) in batch {
        let mut sp = sqlx::Connection::begin(&mut *tx).await?;
        match store_request(&mut sp, channel_id, request, now, false).await {
            Ok(new) => {
                sp.commit().await?;
                if new > 0 && !waiting.contains(&channel_id.as_str()) {
                    waiting.push(channel_id);
                }
                answers.push(Ok(new));
            }
            Err(e) => {
                sp.rollback().await?;
                tracing::warn!(channel_id, error = %e, "a line webhook request was refused by the database");
                answers.push(Err(refusal(&e)));
            }
        }
    }
    let queued = queue_jobs(&mut tx, app, &waiting).await?;
    tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
    Ok((answers, queued))
}

/// One `line.events` job per channel (a no-op where one is queued); whether any was new.
async fn queue_jobs(tx: &mut tsunagu_store::AnyConnection, app: &SharedApp, channels: &[&str]) -> anyhow::Result<bool> {
    let mut queued = false;
    let delay_ms = app.config.line.events_delay_ms as i64;
    for channel_id in channels {
        let key = format!("{}:{channel_id}", kinds::LINE_EVENTS);
        let payload = serde_json::json!({"channel_id": channel_id});
        queued |= jobs::enqueue(tx, app, kinds::LINE_EVENTS, &payload, Some(&key), delay_ms).await?.is_some();
    }
    Ok(queued)
}

/// The whole batch ([`Stored`]), or the first error (the caller rolls back). The write lock is
/// held while its statements run, and each is a round trip to the database's thread, so they do
/// not grow with the number of requests: per channel one to read its state (read before the
/// events are stored: a course attached meanwhile takes effect from the next batch), one per
/// 200 events to store them, and per channel one to update the friend list. Only a channel
/// with courses adds statements, per follow or block, for what it starts or stops there.
async fn store_and_apply<'b>(
    tx: &mut tsunagu_store::AnyConnection,
    batch: &'b [(String, CallbackRequest)],
    now: i64,
) -> Result<Stored<'b>, tsunagu_store::StoreError> {
    // Per channel, in order of first appearance: its state before this batch.
    let mut channels: Vec<(&str, store::ChannelState)> = Vec::new();
    for (channel_id, _) in batch {
        if !channels.iter().any(|(c, _)| *c == channel_id.as_str()) {
            channels.push((channel_id, store::channel_state(tx, channel_id).await?));
        }
    }
    // A channel's new events are applied here unless it has events waiting for the job.
    let inline = |channel_id: &str| channels.iter().any(|(c, s)| *c == channel_id && !s.has_unhandled);
    let prepared: Vec<(usize, &str, Prepared<'b>)> = batch
        .iter()
        .enumerate()
        .flat_map(|(i, (channel_id, request))| {
            prepare(request, now).into_iter().map(move |p| (i, channel_id.as_str(), p))
        })
        .collect();
    let rows: Vec<(&str, NewEvent<'_>)> =
        prepared.iter().map(|(_, channel_id, p)| (*channel_id, p.new_event(inline(channel_id)))).collect();
    let fresh = store::insert_events(tx, &rows, now).await?;
    let mut counts = vec![0usize; batch.len()];
    // Per channel: its new events in arrival order.
    let mut by_channel: Vec<(&str, Vec<super::events::Facts<'b>>)> =
        channels.iter().map(|(c, _)| (*c, Vec::new())).collect();
    for ((i, channel_id, p), new) in prepared.into_iter().zip(fresh) {
        if new {
            counts[i] += 1;
            if let Some((_, facts)) = by_channel.iter_mut().find(|(c, _)| *c == channel_id) {
                facts.push(p.facts);
            }
        }
    }
    let (mut applied, mut waiting, mut due) = (0, Vec::new(), 0);
    for ((channel_id, facts), (_, state)) in by_channel.into_iter().zip(&channels) {
        if facts.is_empty() {
            continue;
        }
        if state.has_unhandled {
            waiting.push(channel_id);
            continue;
        }
        applied += facts.len();
        let (changes, _, _) = super::events::friend_changes(facts.into_iter());
        store::set_friends(tx, channel_id, &changes, now).await?;
        if state.has_courses {
            due += tsunagu_store::courses::follow_friend_changes(tx, channel_id, &changes, now).await?;
        }
    }
    Ok(Stored { answers: counts.into_iter().map(Ok).collect(), applied, waiting, due })
}

/// What [`store_and_apply`] did.
struct Stored<'b> {
    /// Each request's count of new events.
    answers: Vec<Result<usize, Refused>>,
    /// Events applied.
    applied: usize,
    /// Channels whose new events were stored unapplied (they have events waiting for the job).
    waiting: Vec<&'b str>,
    /// Course subscriptions that became due (a follow started or resumed them).
    due: u64,
}

/// One event of a request, ready to store: what the row holds beside the request's own text.
struct Prepared<'r> {
    /// The event's JSON as received.
    text: String,
    /// Every documented event has a webhookEventId; anything without one is keyed by its
    /// content, so a redelivery of it is still recognised.
    key: String,
    redelivery: bool,
    facts: super::events::Facts<'r>,
}

impl Prepared<'_> {
    fn new_event(&self, handled: bool) -> NewEvent<'_> {
        NewEvent {
            webhook_event_id: &self.key,
            event_type: self.facts.event_type,
            user_id: self.facts.user_id,
            event_ts: self.facts.event_ts,
            redelivery: self.redelivery,
            body: &self.text,
            handled,
        }
    }
}

fn prepare(request: &CallbackRequest, now: i64) -> Vec<Prepared<'_>> {
    request
        .events
        .iter()
        .map(|raw| {
            let text = raw.to_string();
            let info = EventInfo::from_json(raw);
            // Read from the request itself (what `info` holds), so that the facts outlive `info`.
            let event_type = raw.get("type").and_then(|t| t.as_str()).unwrap_or("unknown");
            let user_id = info.as_ref().and(raw.pointer("/source/userId").and_then(serde_json::Value::as_str));
            let key = match &info {
                Some(i) => i.webhook_event_id.clone(),
                None => format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes()))),
            };
            Prepared {
                redelivery: info.as_ref().is_some_and(|i| i.is_redelivery),
                facts: super::events::Facts {
                    event_type,
                    user_id,
                    event_ts: info.as_ref().map(|i| i.timestamp_ms).unwrap_or(now),
                    reply_token: raw.get("replyToken").and_then(serde_json::Value::as_str),
                },
                key,
                text,
            }
        })
        .collect()
}

/// Store a request's events (stored as handled when `handled`: the caller applies them in the
/// same transaction); returns how many were new.
async fn store_request(
    c: &mut tsunagu_store::AnyConnection,
    channel_id: &str,
    request: &CallbackRequest,
    now: i64,
    handled: bool,
) -> Result<usize, tsunagu_store::StoreError> {
    let prepared = prepare(request, now);
    let rows: Vec<(&str, NewEvent<'_>)> = prepared.iter().map(|p| (channel_id, p.new_event(handled))).collect();
    Ok(store::insert_events(c, &rows, now).await?.into_iter().filter(|new| *new).count())
}

fn refusal(e: &tsunagu_store::StoreError) -> Refused {
    if let tsunagu_store::StoreError::Db(sqlx::Error::Database(db)) = e
        && db.code().is_some_and(|c| c.starts_with("22"))
    {
        return Refused::Data(db.message().to_string());
    }
    Refused::Unavailable(e.to_string())
}
