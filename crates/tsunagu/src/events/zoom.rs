//! ［Zoom設定］ of an event (manual 000, meeting steps ③–⑭, webinar steps ③–⑯) and the
//! `events.zoom` job that brings Zoom to what was saved.
//!
//! A save stores the choice as a new revision and queues the job in the same transaction. The
//! job reads the newest revision, creates, updates or deletes the meeting or webinar, records
//! what Zoom holds as soon as it has Zoom's answer (so a later run updates what it made), and
//! then the state reached for that revision. A save made while the job runs queues another run,
//! which waits for the first (one run per event holds a lease). A create whose answer was lost
//! cannot be told apart from one Zoom never got: it is sent again, and the page says to check
//! for a duplicate.

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use tsunagu_store::events::{self as store, ZoomChoice, ZoomHeld, ZoomSettings};
use tsunagu_store::jobs::ClaimedJob;
use tsunagu_store::{AnyConnection, StoreError};
use tsunagu_zoom::model::{DeleteOptions, EventRef};
use tsunagu_zoom::settings::{self as zs, MeetingOptions, Recording, Schedule, UrlSender, WebinarOptions};
use tsunagu_zoom::{Retry, ZoomError};

use super::form::{Problem, instant, local_input};
use crate::app::{App, SharedApp};
use crate::jobs::{JobError, Outcome};
use crate::web::chrome::Chrome;
use crate::web::context::flash_redirect;
use crate::web::error::AppError;
use crate::web::session::Auth;

/// The job kind.
pub const SYNC: &str = "events.zoom";

/// The host the meeting is scheduled for: the token's own user. With the Server-to-Server app
/// of the manual that is the owner user who created the app (the manual asks for the owner).
const HOST: &str = "me";

/// The screen's options, stored as JSON with the settings. Every field has a default, so an
/// option added later reads old rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Options {
    pub waiting_room: bool,
    pub join_before_host: bool,
    pub registration: bool,
    /// `tsunagu` or `zoom`.
    pub url_sender: String,
    pub participant_video: bool,
    pub participant_mic: bool,
    pub multiple_devices: bool,
    pub panelist_video: bool,
    pub q_and_a: bool,
    pub on_demand: bool,
    pub practice_session: bool,
    /// `none`, `local` or `cloud`.
    pub recording: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            waiting_room: false,
            join_before_host: false,
            registration: true,
            url_sender: "tsunagu".into(),
            participant_video: false,
            participant_mic: false,
            multiple_devices: false,
            panelist_video: true,
            q_and_a: true,
            on_demand: false,
            practice_session: false,
            recording: "none".into(),
        }
    }
}

impl Options {
    fn sender(&self) -> UrlSender {
        if self.url_sender == "zoom" { UrlSender::Zoom } else { UrlSender::Tsunagu }
    }

    fn meeting(&self) -> MeetingOptions {
        MeetingOptions {
            waiting_room: self.waiting_room,
            join_before_host: self.join_before_host,
            registration: self.registration,
            url_sender: self.sender(),
            participant_video: self.participant_video,
            participant_mic: self.participant_mic,
        }
    }

    fn webinar(&self) -> WebinarOptions {
        WebinarOptions {
            registration: self.registration,
            url_sender: self.sender(),
            multiple_devices: self.multiple_devices,
            panelist_video: self.panelist_video,
            q_and_a: self.q_and_a,
            on_demand: self.on_demand,
            practice_session: self.practice_session,
            recording: match self.recording.as_str() {
                "local" => Recording::Local,
                "cloud" => Recording::Cloud,
                _ => Recording::None,
            },
        }
    }

    pub fn parse(json: &str) -> Options {
        serde_json::from_str(json).unwrap_or_default()
    }
}

/// Queue the job for the event on the caller's transaction (call [`crate::jobs::wake`] after
/// the commit). One queued run per event is enough: it applies the newest revision.
pub async fn queue_sync(c: &mut AnyConnection, app: &App, event_id: i64) -> Result<(), StoreError> {
    let payload = serde_json::json!({ "event_id": event_id });
    crate::jobs::enqueue(c, app, SYNC, &payload, Some(&format!("{SYNC}:{event_id}")), 0).await?;
    Ok(())
}

// ---- the page -------------------------------------------------------------------------------

/// What the form holds, as typed.
#[derive(Debug, Clone, Default)]
struct ZoomForm {
    enabled: bool,
    kind: String,
    start: String,
    duration: String,
    options: Options,
}

impl ZoomForm {
    fn of(settings: Option<&ZoomSettings>, event: &store::Event, tz: &str) -> ZoomForm {
        match settings {
            Some(z) => ZoomForm {
                enabled: z.enabled,
                kind: z.kind.clone(),
                start: local_input(z.starts_at, tz),
                duration: z.duration_minutes.to_string(),
                options: Options::parse(&z.options),
            },
            None => ZoomForm {
                enabled: true,
                kind: "meeting".into(),
                start: local_input(event.starts_at, tz),
                duration: ((event.ends_at - event.starts_at) / 60_000).clamp(1, 1440).to_string(),
                options: Options::default(),
            },
        }
    }

    fn from_fields(fields: &[(String, String)]) -> ZoomForm {
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.trim().to_string()).unwrap_or_default();
        let on = |k: &str| get(k) == "on";
        let kind = get("kind");
        // 参加者登録利用 and Zoom情報通知設定 appear on both the meeting and the webinar part.
        let prefix = if kind == "webinar" { "w_" } else { "m_" };
        ZoomForm {
            enabled: get("use") != "off",
            start: get("start"),
            duration: get("duration"),
            options: Options {
                waiting_room: on("waiting_room"),
                join_before_host: on("join_before_host"),
                registration: on(&format!("{prefix}registration")),
                url_sender: if get(&format!("{prefix}url_sender")) == "zoom" { "zoom" } else { "tsunagu" }.into(),
                participant_video: on("participant_video"),
                participant_mic: on("participant_mic"),
                multiple_devices: on("multiple_devices"),
                panelist_video: on("panelist_video"),
                q_and_a: on("q_and_a"),
                on_demand: on("on_demand"),
                practice_session: on("practice_session"),
                recording: match get("recording").as_str() {
                    r @ ("local" | "cloud") => r.to_string(),
                    _ => "none".into(),
                },
            },
            kind,
        }
    }

    /// The choice to store, or what to fix.
    fn parse(&self, title: &str, tz: &str) -> Result<(i64, i64, Vec<&'static str>), Vec<Problem>> {
        let mut problems = Vec::new();
        if self.kind != "meeting" && self.kind != "webinar" {
            problems.push(Problem {
                field: "kind",
                message: "［ミーティング］か［ウェビナー］を選択してください。".into(),
            });
        }
        let start = instant(&self.start, tz);
        if start.is_none() {
            problems.push(Problem {
                field: "start",
                message: "開催日時を「2027-01-20 19:00」の形で入力してください。".into(),
            });
        }
        let digits: String = self
            .duration
            .chars()
            .map(|c| if ('０'..='９').contains(&c) { char::from_u32(c as u32 - 0xFEE0).unwrap_or(c) } else { c })
            .collect();
        let duration = digits.parse::<i64>().ok().filter(|d| (1..=1440).contains(d));
        if duration.is_none() {
            problems.push(Problem {
                field: "duration",
                message: "所要時間は1分から1440分（24時間）の間で、分単位の数字で入力してください。".into(),
            });
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let (start, duration) = (start.unwrap_or_default(), duration.unwrap_or_default());
        // The mapping itself checks what it can (the title Zoom takes, the time zone) and says
        // which choices it changed.
        let local = jiff::Timestamp::from_millisecond(start)
            .ok()
            .and_then(|t| jiff::tz::TimeZone::get(tz).ok().map(|z| t.to_zoned(z).datetime()));
        let Some(local) = local else {
            return Err(vec![Problem { field: "start", message: "開催日時を確認してください。".into() }]);
        };
        let schedule = Schedule { topic: title, start: local, time_zone: tz, duration_minutes: duration as u32 };
        let notes = if self.kind == "webinar" {
            zs::webinar(&schedule, &self.options.webinar()).map(|(_, _, n)| n)
        } else {
            zs::meeting(&schedule, &self.options.meeting()).map(|(_, n)| n)
        };
        match notes {
            Ok(n) => Ok((start, duration, n.into_iter().map(|n| n.0).collect())),
            Err(e) => Err(vec![Problem { field: "start", message: e.to_string() }]),
        }
    }
}

struct Choice {
    name: &'static str,
    label: &'static str,
    /// The manual's note under the option.
    hint: &'static str,
    on: bool,
}

#[derive(Template)]
#[template(path = "event_zoom.html")]
struct ZoomPage {
    chrome: Chrome,
    id: i64,
    event_title: String,
    form: ZoomForm,
    meeting_choices: Vec<Choice>,
    webinar_choices: Vec<Choice>,
    errors: Vec<String>,
    /// Switching to ［利用しない］ deletes what Zoom holds: asked once more.
    confirm_delete: Option<String>,
    state: Option<StateView>,
}

/// What the event page and the settings page show about Zoom.
pub struct StateView {
    pub label: &'static str,
    pub code: &'static str,
    pub reason: String,
    pub kind: &'static str,
    pub zoom_id: String,
    pub passcode: String,
    pub join_url: String,
}

pub fn state_view(z: &ZoomSettings) -> StateView {
    let (label, code) = match z.state.as_str() {
        "pending" if z.zoom_id.is_some() => ("更新中", "pending"),
        "pending" => ("作成中", "pending"),
        "created" => ("作成済み", "created"),
        "failed" => ("失敗", "failed"),
        _ => ("利用しない", "none"),
    };
    StateView {
        label,
        code,
        reason: z.reason.clone(),
        kind: if z.zoom_kind == "webinar" || (z.zoom_id.is_none() && z.kind == "webinar") {
            "ウェビナー"
        } else {
            "ミーティング"
        },
        zoom_id: z.zoom_id.map(format_zoom_id).unwrap_or_default(),
        passcode: z.passcode.clone(),
        join_url: if z.zoom_id.is_some() { z.join_url.clone() } else { String::new() },
    }
}

/// Zoom shows meeting IDs grouped: `851 2345 6789`, `8512 3456 7890`.
pub fn format_zoom_id(id: i64) -> String {
    let s = id.to_string();
    let n = s.len();
    let cut: &[usize] = match n {
        10 => &[3, 6],
        11 => &[3, 7],
        _ if n > 11 => &[4, 8],
        _ => &[],
    };
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if cut.contains(&i) {
            out.push(' ');
        }
        out.push(ch);
    }
    out
}

fn choices(o: &Options) -> (Vec<Choice>, Vec<Choice>) {
    let c = |name, label, hint, on| Choice { name, label, hint, on };
    let meeting = vec![
        c(
            "waiting_room",
            "待機室利用",
            "on の場合、参加者は Zoom の URL にアクセスした後、主催者が許可して初めてミーティングに参加できます。",
            o.waiting_room,
        ),
        c(
            "join_before_host",
            "ホストの前の参加",
            "on の場合、参加者は主催者が出席していなくてもミーティングに参加できます。待機室利用が on の場合は使えません（Zoom の仕様）。",
            o.join_before_host,
        ),
        c(
            "m_registration",
            "参加者登録利用",
            "on の場合、Tsunagu で申し込んだ人だけが、その人専用の URL でミーティングに参加できます。同伴者設定が自動で行われます。Zoom の登録ページを見つけた他の人は、主催者の承認待ちになります。",
            o.registration,
        ),
        c(
            "participant_video",
            "参加者ビデオ",
            "on の場合、参加者がミーティングに参加すると参加者のカメラが起動します。ミーティング中に Zoom のアプリで off にできます。",
            o.participant_video,
        ),
        c(
            "participant_mic",
            "参加者マイク",
            "on の場合、参加者がミーティングに参加すると参加者のマイクが起動します。off の場合はミュートで入室します。",
            o.participant_mic,
        ),
    ];
    let webinar = vec![
        c(
            "w_registration",
            "参加者登録利用",
            "on の場合、Tsunagu で申し込んだ人だけが、その人専用の URL でウェビナーに参加できます。同伴者設定が自動で行われます。Zoom の登録ページを見つけた他の人は、主催者の承認待ちになります。",
            o.registration,
        ),
        c(
            "multiple_devices",
            "複数のデバイスからの参加許可",
            "on の場合、申込者用に発行された URL に複数の端末からアクセスし、それぞれで受講できます。参加者登録利用が on の場合のみ有効です。",
            o.multiple_devices,
        ),
        c(
            "panelist_video",
            "パネリストビデオ",
            "on の場合、ホストとパネリストがウェビナーに参加するとカメラが起動します。ウェビナー中に Zoom のアプリで off にできます。",
            o.panelist_video,
        ),
        c("q_and_a", "質疑応答", "on の場合、ウェビナー中に参加者からテキストで質問を受け付けます。", o.q_and_a),
        c(
            "on_demand",
            "オンデマンド",
            "on の場合、ウェビナーが録画され、途中から参加した人も開始時点からさかのぼって視聴できます。",
            o.on_demand,
        ),
        c(
            "practice_session",
            "実践セッション",
            "on の場合、本番の前にウェビナーのルームでリハーサルができます。Zoom のアプリで実践セッションを解除すると、そのまま本番に移れます。",
            o.practice_session,
        ),
    ];
    (meeting, webinar)
}

fn page(
    auth: &Auth,
    event: &store::Event,
    form: ZoomForm,
    errors: Vec<String>,
    confirm_delete: Option<String>,
    saved: Option<&ZoomSettings>,
) -> ZoomPage {
    let (meeting_choices, webinar_choices) = choices(&form.options);
    ZoomPage {
        chrome: Chrome::console(auth, "events", "Zoom設定"),
        id: event.id,
        event_title: event.title.clone(),
        form,
        meeting_choices,
        webinar_choices,
        errors,
        confirm_delete,
        state: saved.map(state_view),
    }
}

async fn owned(app: &SharedApp, auth: &Auth, id: i64) -> Result<(store::Event, Option<ZoomSettings>), AppError> {
    let mut c = app.store.read().await?;
    let event = store::get(&mut c, auth.account.id, id).await?.ok_or(AppError::NotFound)?;
    let settings = store::zoom_settings(&mut c, auth.account.id, id).await?;
    Ok((event, settings))
}

/// ［Zoom設定］.
pub async fn show(State(app): State<SharedApp>, auth: Auth, Path(id): Path<i64>) -> Result<Html<String>, AppError> {
    let (event, saved) = owned(&app, &auth, id).await?;
    let form = ZoomForm::of(saved.as_ref(), &event, &auth.account.time_zone);
    Ok(Html(page(&auth, &event, form, Vec::new(), None, saved.as_ref()).render()?))
}

/// ［保存する］: store the choice as a new revision and queue the job, in one transaction.
pub async fn save(
    State(app): State<SharedApp>,
    auth: Auth,
    Path(id): Path<i64>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let (event, saved) = owned(&app, &auth, id).await?;
    let tz = &auth.account.time_zone;
    let form = ZoomForm::from_fields(&fields);
    let confirmed = fields.iter().any(|(k, v)| k == "confirm_delete" && v == "yes");
    let refuse = |form: ZoomForm, errors: Vec<String>, confirm: Option<String>| -> Result<Response, AppError> {
        let p = page(&auth, &event, form, errors, confirm, saved.as_ref());
        Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(p.render()?)).into_response())
    };
    let held_kind = saved.as_ref().filter(|z| z.zoom_id.is_some()).map(|z| z.zoom_kind.clone());
    let people = || async {
        let mut c = app.store.read().await?;
        Ok::<_, AppError>(store::registered_people(&mut c, id).await?)
    };
    let label = |k: &str| if k == "webinar" { "ウェビナー" } else { "ミーティング" };
    // Deleting what Zoom holds (利用しない, or the other kind) is asked once more, saying what
    // happens to the people registered in it.
    if let Some(held) = held_kind.as_deref().filter(|_| !confirmed) {
        let n = people().await?;
        let msg = if !form.enabled {
            let who = if n > 0 {
                format!(
                    "Zoom に登録済みの {n} 人の参加URLは使えなくなります（Zoom からの取り消しメールは送られません）。"
                )
            } else {
                String::new()
            };
            Some(format!(
                "［利用しない］にすると、Zoom の{}を削除します。{who}よろしければ［削除して保存する］を押してください。",
                label(held)
            ))
        } else if form.kind != held && (form.kind == "webinar" || form.kind == "meeting") {
            let who = if n > 0 {
                format!(
                    "登録済みの {n} 人は新しい{}に登録し直し、新しい参加URLをメールでお送りします。",
                    label(&form.kind)
                )
            } else {
                String::new()
            };
            Some(format!(
                "種類を変えると、Zoom の{}を削除して{}を作成します。{who}よろしければ［削除して保存する］を押してください。",
                label(held),
                label(&form.kind)
            ))
        } else {
            None
        };
        if let Some(msg) = msg {
            return refuse(form, Vec::new(), Some(msg));
        }
    }
    let (start, duration, notes) = if form.enabled {
        match form.parse(&event.title, tz) {
            Ok(p) => p,
            Err(problems) => return refuse(form, problems.into_iter().map(|p| p.message).collect(), None),
        }
    } else {
        let z = saved.as_ref();
        (z.map(|z| z.starts_at).unwrap_or(event.starts_at), z.map(|z| z.duration_minutes).unwrap_or(60), Vec::new())
    };
    let options = serde_json::to_string(&form.options).map_err(|e| AppError::Internal(e.into()))?;
    let kind = if form.kind == "webinar" { "webinar" } else { "meeting" };
    let choice =
        ZoomChoice { enabled: form.enabled, kind, starts_at: start, duration_minutes: duration, options: &options };
    let mut tx = app.store.begin().await?;
    let Some(revision) = store::save_zoom_settings(&mut tx, auth.account.id, id, &choice, app.now()).await? else {
        return Err(AppError::NotFound);
    };
    queue_sync(&mut tx, &app, id).await?;
    tx.commit().await.map_err(StoreError::from)?;
    crate::jobs::wake(&app);
    tracing::info!(account_id = %auth.account.id, event_id = id, revision, enabled = form.enabled, kind, "zoom settings saved");
    let mut msg = String::from(if form.enabled {
        "Zoom設定を保存しました。Zoom のミーティング／ウェビナーを作成・更新しています。"
    } else {
        "Zoom設定を保存しました（利用しない）。"
    });
    for n in notes {
        msg.push(' ');
        msg.push_str(n);
    }
    Ok(flash_redirect(&app, &format!("/events/{id}/zoom"), "success", &msg))
}

/// ［ホストとして開始］ (`GET`, a link): a start URL expires (2 hours), so it is fetched at the
/// click and never stored. It is a link, not a form: every page's policy has `form-action
/// 'self'`, and Chromium applies it to the redirect that follows a form, so a form's redirect to
/// Zoom was blocked. Nothing changes here or at Zoom, and the answer goes to the organizer's
/// own browser only.
pub async fn start(State(app): State<SharedApp>, auth: Auth, Path(id): Path<i64>) -> Result<Response, AppError> {
    let (_, saved) = owned(&app, &auth, id).await?;
    let Some((zoom_id, kind)) = saved.as_ref().and_then(|z| z.zoom_id.map(|i| (i, z.zoom_kind.clone()))) else {
        return Ok(flash_redirect(
            &app,
            &format!("/events/{id}"),
            "error",
            "Zoom のミーティング／ウェビナーがまだありません。［Zoom設定］で［保存する］を押してください。",
        ));
    };
    let event = if kind == "webinar" { EventRef::Webinar(zoom_id) } else { EventRef::Meeting(zoom_id) };
    let Some(org) = crate::zoom::organizer(&app, auth.account.id).await.map_err(AppError::Internal)? else {
        return Ok(flash_redirect(&app, &format!("/events/{id}"), "error", NO_CONNECTION));
    };
    match app.zoom.get_event(&org, event).await {
        Ok(e) if !e.start_url.is_empty() => Ok(Redirect::to(&e.start_url).into_response()),
        Ok(_) => Ok(flash_redirect(
            &app,
            &format!("/events/{id}"),
            "error",
            "Zoom から開始用の URL を受け取れませんでした。Zoom のアプリから開始してください。",
        )),
        Err(e) => Ok(flash_redirect(&app, &format!("/events/{id}"), "error", &e.message_ja())),
    }
}

const NO_CONNECTION: &str = "Zoom と連携していません。基本設定で［Zoom API認証方式］と Account ID・Client ID・Client Secret を保存してください。";

// ---- the job ----------------------------------------------------------------------------------

#[derive(Deserialize)]
struct Payload {
    event_id: i64,
}

/// `events.zoom`: bring Zoom to the event's newest revision.
pub async fn sync(app: &App, job: &ClaimedJob) -> Result<Outcome, JobError> {
    let p: Payload = serde_json::from_value(job.payload.clone())
        .map_err(|e| JobError::Permanent(format!("events.zoom payload: {e}")))?;
    let id = p.event_id;
    let (settings, event, tz) = {
        let mut c = app.store.read().await?;
        let Some(settings) = store::zoom_settings_for_job(&mut c, id).await? else { return Ok(Outcome::Done) };
        let Some(event) = store::get_for_job(&mut c, id).await? else { return Ok(Outcome::Done) };
        let tz = tsunagu_store::accounts::get(&mut c, event.account_id)
            .await?
            .map(|a| a.time_zone)
            .unwrap_or_else(|| "Asia/Tokyo".into());
        (settings, event, tz)
    };
    if settings.revision == settings.applied_revision && settings.state != "pending" {
        return Ok(Outcome::Done);
    }
    // One run per event at a time (a save made during a run queues a twin that a second worker
    // may claim): the twin waits for the lease instead of creating a second meeting.
    let lease = app.now() + SYNC_DEADLINE_MS;
    {
        let mut c = app.store.conn().await?;
        if !store::lease_zoom_sync(&mut c, id, app.now(), lease).await? {
            return Err(JobError::WaitUntil { at_ms: app.now() + 5_000, reason: "another run holds the event".into() });
        }
    }
    let result = sync_leased(app, job, &settings, &event, &tz).await;
    if let Ok(mut c) = app.store.conn().await {
        // On failure the lease simply runs out.
        let _ = store::release_zoom_sync(&mut c, id).await;
    }
    result
}

/// The job's deadline; the event's lease lasts as long.
pub const SYNC_DEADLINE_MS: i64 = 300_000;

async fn sync_leased(
    app: &App,
    job: &ClaimedJob,
    settings: &ZoomSettings,
    event: &store::Event,
    tz: &str,
) -> Result<Outcome, JobError> {
    let id = event.id;
    let revision = settings.revision;
    let last_attempt = job.attempts >= job.max_attempts;
    let finish = |state: &'static str, reason: String| async move {
        let mut c = app.store.conn().await?;
        store::finish_zoom_revision(&mut c, id, revision, state, &reason).await?;
        Ok::<_, JobError>(Outcome::Done)
    };
    let org = match crate::zoom::organizer(app, event.account_id).await {
        Ok(Some(org)) => org,
        Ok(None) => return finish("failed", NO_CONNECTION.into()).await,
        Err(e) => {
            tracing::error!(event_id = id, error = %format!("{e:#}"), "cannot read the organizer's zoom connection");
            if last_attempt {
                return finish(
                    "failed",
                    "Zoom の認証情報を読み取れませんでした。基本設定で保存し直してください。".into(),
                )
                .await;
            }
            return Err(JobError::Retry(format!("{e:#}")));
        }
    };
    match apply(app, &org, event, tz, settings).await {
        Ok((state, warning)) => finish(state, warning).await,
        Err(e) => {
            let reason = e.message_ja();
            match e.retry() {
                Retry::NotBefore { retry_after } => {
                    let at = reset_time(retry_after.as_deref(), app.now());
                    let mut c = app.store.conn().await?;
                    store::note_zoom_wait(&mut c, id, revision, &reason).await?;
                    Err(JobError::WaitUntil { at_ms: at, reason: e.to_string() })
                }
                Retry::No => {
                    tracing::warn!(event_id = id, error = %e, "zoom refused the event's settings");
                    finish("failed", reason).await
                }
                _ if last_attempt => {
                    tracing::error!(event_id = id, error = %e, "zoom did not answer; giving up on this revision");
                    finish("failed", reason).await
                }
                _ => Err(JobError::Retry(e.to_string())),
            }
        }
    }
}

/// Said on the page when a create was sent again after an earlier one's answer was lost: Zoom
/// takes no idempotency key for creates, and listing the host's meetings needs a scope beyond
/// the manual's, so Tsunagu cannot tell whether the first one was made.
const MAYBE_DUPLICATE: &str = "Zoom からの応答が途切れたため作成をやり直しました。Zoom の管理画面で同じミーティング／ウェビナーが 2 件できていないか確認し、できていれば参加者のいない方を削除してください。";

/// When a daily allowance is back: Zoom's `Retry-After` date, or the next 00:00 UTC, plus a
/// minute of margin.
pub(crate) fn reset_time(retry_after: Option<&str>, now: i64) -> i64 {
    const DAY: i64 = 86_400_000;
    let parsed = retry_after.and_then(|s| s.parse::<jiff::Timestamp>().ok()).map(|t| t.as_millisecond());
    parsed.filter(|t| *t > now).unwrap_or((now.div_euclid(DAY) + 1) * DAY) + 60_000
}

/// Create, update or delete at Zoom; returns the state reached.
async fn apply(
    app: &App,
    org: &tsunagu_zoom::Organizer,
    event: &store::Event,
    tz: &str,
    z: &ZoomSettings,
) -> Result<(&'static str, String), ZoomError> {
    let held = z.zoom_id.map(|id| if z.zoom_kind == "webinar" { EventRef::Webinar(id) } else { EventRef::Meeting(id) });
    let record = |h: Option<ZoomHeld<'_>>| {
        let h = h.map(|h| (h.zoom_id, h.zoom_kind.to_string(), h.join_url.to_string(), h.passcode.to_string()));
        async move {
            let mut c = app.store.conn().await.map_err(limits_unavailable)?;
            let held =
                h.as_ref().map(|(id, k, j, p)| ZoomHeld { zoom_id: *id, zoom_kind: k, join_url: j, passcode: p });
            store::record_zoom_held(&mut c, event.id, held.as_ref(), app.now()).await.map_err(limits_unavailable)
        }
    };
    let wanted_webinar = z.kind == "webinar";
    // Gone from Zoom, or of the other kind: delete what is held first.
    if let Some(h) = held
        && (!z.enabled || matches!(h, EventRef::Webinar(_)) != wanted_webinar)
    {
        app.zoom.delete_event(org, h, DeleteOptions { notify_registrants: false }).await?;
        record(None).await?;
        tracing::info!(event_id = event.id, zoom_id = h.id(), "zoom meeting deleted");
        if !z.enabled {
            return Ok(("deleted", String::new()));
        }
    } else if !z.enabled {
        return Ok(("deleted", String::new()));
    }
    let held = held.filter(|h| matches!(h, EventRef::Webinar(_)) == wanted_webinar);
    let opts = Options::parse(&z.options);
    let start = jiff::Timestamp::from_millisecond(z.starts_at)
        .ok()
        .and_then(|t| jiff::tz::TimeZone::get(tz).ok().map(|zone| t.to_zoned(zone).datetime()))
        .ok_or_else(|| other(format!("start {} in {tz}", z.starts_at)))?;
    let schedule = Schedule {
        topic: &event.title,
        start,
        time_zone: tz,
        duration_minutes: z.duration_minutes.clamp(1, 1440) as u32,
    };
    let mut warning = String::new();
    let mut created = false;
    if held.is_none() {
        let mut c = app.store.conn().await.map_err(limits_unavailable)?;
        if store::mark_create_attempt(&mut c, event.id).await.map_err(limits_unavailable)? {
            warning = MAYBE_DUPLICATE.into();
        }
    }
    if wanted_webinar {
        let (body, confirm, _) = zs::webinar(&schedule, &opts.webinar()).map_err(|e| other(e.to_string()))?;
        match held {
            Some(h) => app.zoom.update_event(org, h, HOST, &body.as_update(&confirm)).await?,
            None => {
                let w = app.zoom.create_webinar(org, HOST, &body).await?;
                created = true;
                record(Some(ZoomHeld {
                    zoom_id: w.id,
                    zoom_kind: "webinar",
                    join_url: &w.join_url,
                    passcode: &w.password,
                }))
                .await?;
                tracing::info!(event_id = event.id, zoom_id = w.id, "zoom webinar created");
                record_hosts(app, event.id, &w).await?;
                // The 2025 schema takes who sends the confirmation mail only on update (NOTES §3).
                app.zoom.update_event(org, EventRef::Webinar(w.id), HOST, &confirm).await?;
            }
        }
    } else {
        let (body, _) = zs::meeting(&schedule, &opts.meeting()).map_err(|e| other(e.to_string()))?;
        match held {
            Some(h) => app.zoom.update_event(org, h, HOST, &body.as_update()).await?,
            None => {
                let m = app.zoom.create_meeting(org, HOST, &body).await?;
                created = true;
                record(Some(ZoomHeld {
                    zoom_id: m.id,
                    zoom_kind: "meeting",
                    join_url: &m.join_url,
                    passcode: &m.password,
                }))
                .await?;
                tracing::info!(event_id = event.id, zoom_id = m.id, "zoom meeting created");
                record_hosts(app, event.id, &m).await?;
            }
        }
    }
    if created {
        register_everyone_again(app, event.id).await?;
    }
    Ok(("created", warning))
}

/// A new meeting or webinar (the kind changed, or Zoom was turned off and on again): the
/// people already registered hold links to the old one, so each is registered again and gets
/// a new join mail.
async fn register_everyone_again(app: &App, event_id: i64) -> Result<(), ZoomError> {
    let mut tx = app.store.begin().await.map_err(limits_unavailable)?;
    let people = tsunagu_store::applications::reregister_all(&mut tx, event_id).await.map_err(limits_unavailable)?;
    super::register::queue(&mut tx, app, &people).await.map_err(limits_unavailable)?;
    tx.commit().await.map_err(StoreError::from).map_err(limits_unavailable)?;
    if !people.is_empty() {
        tracing::info!(event_id, people = people.len(), "people registered again in the new zoom meeting");
        crate::jobs::wake(app);
    }
    Ok(())
}

/// Remember who Zoom refuses as registrants, so the application form refuses them first.
async fn record_hosts(app: &App, event_id: i64, e: &tsunagu_zoom::model::ZoomEvent) -> Result<(), ZoomError> {
    let mut c = app.store.conn().await.map_err(limits_unavailable)?;
    store::record_host_emails(&mut c, event_id, &e.host_emails()).await.map_err(limits_unavailable)
}

fn other(message: String) -> ZoomError {
    ZoomError::Other { status: 0, code: None, message }
}

fn limits_unavailable(e: StoreError) -> ZoomError {
    ZoomError::LimitsUnavailable { detail: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zoom_ids_are_grouped_as_zoom_shows_them() {
        assert_eq!(format_zoom_id(8_512_345_678), "851 234 5678");
        assert_eq!(format_zoom_id(85_123_456_789), "851 2345 6789");
        assert_eq!(format_zoom_id(851_234_567_890), "8512 3456 7890");
        assert_eq!(format_zoom_id(123), "123");
    }

    #[test]
    fn daily_limits_wait_for_zooms_reset() {
        let now = 1_764_000_000_000; // 2025-11-24T16:00:00Z
        assert_eq!(reset_time(Some("2025-11-25T00:00:00Z"), now), 1_764_028_800_000 + 60_000);
        assert_eq!(reset_time(None, now), 1_764_028_800_000 + 60_000, "next 00:00 UTC");
        assert_eq!(reset_time(Some("2020-01-01T00:00:00Z"), now), 1_764_028_800_000 + 60_000, "a past date");
    }

    #[test]
    fn options_read_old_rows_and_the_form() {
        assert_eq!(Options::parse(r#"{"registration":false}"#), Options { registration: false, ..Options::default() });
        let f = |pairs: &[(&str, &str)]| {
            ZoomForm::from_fields(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>())
        };
        let w =
            f(&[("kind", "webinar"), ("w_registration", "on"), ("w_url_sender", "zoom"), ("m_registration", "off")]);
        assert!(w.options.registration && w.options.url_sender == "zoom", "the webinar part's answers count");
        let m = f(&[("kind", "meeting"), ("w_registration", "on"), ("m_registration", "off")]);
        assert!(!m.options.registration);
        assert!(!f(&[("use", "off")]).enabled);
    }
}
