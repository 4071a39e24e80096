//! `POST /line/webhook/{channel_id}` (NOTES §4). The signature is checked on the raw body, in
//! constant time, before anything parses it: a bad or missing one gets 401 and nothing is
//! stored. A good request is stored durably — each event once, deduplicated by
//! `webhookEventId`, so a redelivery is recognised — together with the job that handles it, in
//! one transaction, and answered 200. Unknown event types are kept and ignored.

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
    match app.line_intake.get_or_init(|| Intake::start(&app)).submit(channel_id.clone(), request).await {
        Ok(_) => answer(StatusCode::OK, "ok"),
        Err(e) => {
            // Not stored: LINE redelivers (when enabled) on a non-2xx answer.
            tracing::error!(channel_id, error = %e, "line webhook could not be stored");
            answer(StatusCode::SERVICE_UNAVAILABLE, "try again")
        }
    }
}

/// Group commit: requests are handed to one writer task, which stores whatever has queued up
/// meanwhile in a single transaction, then answers each. Every 200 still means "stored and
/// committed"; under load many requests share one commit instead of queueing for the
/// database's write lock one by one.
pub struct Intake {
    tx: tokio::sync::mpsc::Sender<Pending>,
}

struct Pending {
    channel_id: String,
    request: CallbackRequest,
    done: tokio::sync::oneshot::Sender<Result<usize, String>>,
}

/// Requests stored per transaction at most.
const BATCH: usize = 256;

impl Intake {
    fn start(app: &SharedApp) -> Intake {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Pending>(4 * BATCH);
        // A weak handle: the task ends with the app (its sender lives in the app).
        let weak = std::sync::Arc::downgrade(app);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let Some(app) = weak.upgrade() else { break };
                let result = store_batch(&app, &batch).await.map_err(|e| format!("{e:#}"));
                for (p, n) in batch.drain(..).zip(match &result {
                    Ok(counts) => counts.iter().map(|n| Ok(*n)).collect::<Vec<_>>(),
                    Err(e) => vec![Err(e.clone()); BATCH],
                }) {
                    let _ = p.done.send(n);
                }
            }
        });
        Intake { tx }
    }

    async fn submit(&self, channel_id: String, request: CallbackRequest) -> Result<usize, String> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.tx.send(Pending { channel_id, request, done }).await.map_err(|_| "intake stopped".to_string())?;
        wait.await.map_err(|_| "intake stopped".to_string())?
    }
}

/// Store every pending request's events (each once) and one job per channel with new events.
async fn store_batch(app: &SharedApp, batch: &[Pending]) -> anyhow::Result<Vec<usize>> {
    let now = app.now();
    let mut tx = app.store.begin().await?;
    let mut counts = Vec::with_capacity(batch.len());
    let mut channels_with_new: Vec<&str> = Vec::new();
    for p in batch {
        let mut new = 0;
        for raw in &p.request.events {
            let text = raw.to_string();
            let info = EventInfo::from_json(raw);
            // Every documented event has a webhookEventId; anything without one is keyed by
            // its content, so a redelivery of it is still recognised.
            let fallback = format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())));
            let e = NewEvent {
                webhook_event_id: info.as_ref().map(|i| i.webhook_event_id.as_str()).unwrap_or(&fallback),
                event_type: info
                    .as_ref()
                    .map(|i| i.kind.as_str())
                    .or(raw.get("type").and_then(|t| t.as_str()))
                    .unwrap_or("unknown"),
                user_id: info.as_ref().and_then(|i| i.user_id.as_deref()),
                event_ts: info.as_ref().map(|i| i.timestamp_ms).unwrap_or(now),
                redelivery: info.as_ref().is_some_and(|i| i.is_redelivery),
                body: &text,
            };
            if store::insert_event(&mut tx, &p.channel_id, &e, now).await? {
                new += 1;
            }
        }
        if new > 0 && !channels_with_new.contains(&p.channel_id.as_str()) {
            channels_with_new.push(&p.channel_id);
        }
        counts.push(new);
    }
    for channel_id in channels_with_new {
        jobs::enqueue(&mut tx, app, kinds::LINE_EVENTS, &serde_json::json!({"channel_id": channel_id}), None, 0)
            .await?;
    }
    tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
    Ok(counts)
}
