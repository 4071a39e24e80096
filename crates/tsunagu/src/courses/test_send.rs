//! テスト配信 (manual "テスト配信機能について"): 「テスト配信先登録」 registers the instructor's own
//! LINE account by LINE Login on the course's Login channel (callback on the manager host), and
//! 「テスト配信先選択」 sends all the course's messages, or one, to the chosen test accounts now.
//! Test sends are stored like any request (retry key first, sent by the dispatcher, retried
//! with the same key), marked テスト, and never touch a student's sequence.

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::response::{Html, IntoResponse, Response};
use tsunagu_core::Feature;
use tsunagu_line::RetryKey;
use tsunagu_store::courses as store;
use tsunagu_store::line::{self as line_store, TestRecipient};

use super::console::{NAV, owned};
use crate::app::SharedApp;
use crate::clock::format_local;
use crate::line::login::{self, Purpose};
use crate::web::chrome::Chrome;
use crate::web::context::flash_redirect;
use crate::web::error::AppError;
use crate::web::session::Auth;

fn gate(app: &SharedApp, auth: &Auth, id: i64) -> Option<Response> {
    (!auth.account.plan.allows(Feature::LineLink))
        .then(|| flash_redirect(app, &format!("/courses/{id}/line"), "error", Feature::LineLink.upgrade_message()))
}

#[derive(Template)]
#[template(path = "course_test_recipients.html")]
struct RecipientsPage {
    chrome: Chrome,
    id: i64,
    title: String,
    /// Why registering cannot start (no Login channel, no Messaging API channel).
    blocked: Option<&'static str>,
    recipients: Vec<TestRecipient>,
}

async fn recipients_of(app: &SharedApp, auth: &Auth, channel: Option<&str>) -> Result<Vec<TestRecipient>, AppError> {
    let Some(channel) = channel else { return Ok(Vec::new()) };
    let mut c = app.store.read().await?;
    Ok(line_store::test_recipients(&mut c, auth.account.id, channel).await?)
}

const NO_CHANNEL: &str = "先に「LINEステップ配信設定」で Messaging API チャネル（公式LINE）のチャネル ID とチャネルシークレットを設定してください。";

/// 「テスト配信先登録」.
pub async fn recipients(State(app): State<SharedApp>, auth: Auth, Path(id): Path<i64>) -> Result<Response, AppError> {
    let course = owned(&app, &auth, id).await?;
    if let Some(r) = gate(&app, &auth, id) {
        return Ok(r);
    }
    let blocked = match (&course.line_login_id, &course.line_channel_id) {
        (None, _) => Some(login::NOT_LINKED),
        (_, None) => Some(NO_CHANNEL),
        _ => None,
    };
    let page = RecipientsPage {
        chrome: Chrome::console(&auth, NAV, "テスト配信先登録"),
        id,
        blocked,
        recipients: recipients_of(&app, &auth, course.line_channel_id.as_deref()).await?,
        title: course.title,
    };
    Ok(Html(page.render()?).into_response())
}

/// 「LINE ログインページへ移動」 (a link: a form could not be sent on to LINE under the pages'
/// `form-action 'self'`): to LINE's login page, coming back to the manager host. What it stores
/// is only good for completing a login in this browser within [`login::ATTEMPT_MS`].
pub async fn start_login(State(app): State<SharedApp>, auth: Auth, Path(id): Path<i64>) -> Result<Response, AppError> {
    let course = owned(&app, &auth, id).await?;
    if let Some(r) = gate(&app, &auth, id) {
        return Ok(r);
    }
    let back = format!("/courses/{id}/line/test-recipients");
    if course.line_channel_id.is_none() {
        return Ok(flash_redirect(&app, &back, "error", NO_CHANNEL));
    }
    // With the add-friend screen: a test account must be a friend to receive the messages.
    let prompt = Some(tsunagu_line::login::BotPrompt::Aggressive);
    match login::begin(&app, Purpose::Test, auth.account.id, id, &app.config.http.manager_url, prompt).await? {
        Err(why) => Ok(flash_redirect(&app, &back, "error", why)),
        Ok((url, cookie)) => {
            let mut resp = StatusCode::SEE_OTHER.into_response();
            resp.headers_mut().insert(LOCATION, url.parse().map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?);
            resp.headers_mut().append(SET_COOKIE, cookie);
            Ok(resp)
        }
    }
}

pub async fn delete_recipient(
    State(app): State<SharedApp>,
    auth: Auth,
    Path((id, recipient)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    owned(&app, &auth, id).await?;
    let mut c = app.store.conn().await?;
    if !line_store::delete_test_recipient(&mut c, auth.account.id, recipient).await? {
        return Err(AppError::NotFound);
    }
    Ok(flash_redirect(&app, &format!("/courses/{id}/line/test-recipients"), "success", "テスト配信先を削除しました。"))
}

struct MessageChoice {
    id: i64,
    label: String,
}

struct SentLine {
    at: String,
    to: String,
    what: String,
    state: &'static str,
    state_code: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "course_test_send.html")]
struct SendPage {
    chrome: Chrome,
    id: i64,
    title: String,
    blocked: Option<&'static str>,
    recipients: Vec<TestRecipient>,
    messages: Vec<MessageChoice>,
    sent: Vec<SentLine>,
}

/// A request's state as the log shows it.
pub fn send_state_ja(state: &str) -> &'static str {
    match state {
        "sent" => "送信済み",
        "failed" => "失敗",
        _ => "送信中",
    }
}

/// 「テスト配信先選択」.
pub async fn choose(State(app): State<SharedApp>, auth: Auth, Path(id): Path<i64>) -> Result<Response, AppError> {
    let course = owned(&app, &auth, id).await?;
    if let Some(r) = gate(&app, &auth, id) {
        return Ok(r);
    }
    let recipients = recipients_of(&app, &auth, course.line_channel_id.as_deref()).await?;
    let (mut steps, log) = {
        let mut c = app.store.read().await?;
        (store::current_steps(&mut c, id).await?, store::test_sends(&mut c, id, 50).await?)
    };
    steps.sort_by_key(|s| super::dispatch::schedule_step(s).sort_key());
    let name = |user: &str| {
        recipients
            .iter()
            .find(|r| r.line_user_id == user)
            .map(|r| r.display_name.clone())
            .unwrap_or_else(|| "（削除済みの配信先）".into())
    };
    let sent = log
        .into_iter()
        .map(|e| {
            let (to, step_ids) = super::dispatch::body_parts(&e.body).unwrap_or_default();
            SentLine {
                at: format_local(e.created_at, &course.time_zone),
                to: to.iter().map(|u| name(u)).collect::<Vec<_>>().join("、"),
                what: format!("{} 件のメッセージ", step_ids.len()),
                state: send_state_ja(&e.state),
                state_code: e.state.clone(),
                reason: e.reason,
            }
        })
        .collect();
    let page = SendPage {
        chrome: Chrome::console(&auth, NAV, "テスト配信先選択"),
        id,
        blocked: if course.line_channel_id.is_none() { Some(NO_CHANNEL) } else { None },
        recipients,
        messages: steps
            .iter()
            .map(|s| MessageChoice {
                id: s.id,
                label: format!(
                    "{}・{}通目・{}",
                    super::messages::timing_ja(s.timing),
                    s.position,
                    super::messages::summary(s)
                ),
            })
            .collect(),
        sent,
        title: course.title,
    };
    Ok(Html(page.render()?).into_response())
}

/// 「送信」: one push per test account and chunk of 5 messages, stored, then sent by the
/// dispatcher at once.
pub async fn send(
    State(app): State<SharedApp>,
    auth: Auth,
    Path(id): Path<i64>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let course = owned(&app, &auth, id).await?;
    if let Some(r) = gate(&app, &auth, id) {
        return Ok(r);
    }
    let back = format!("/courses/{id}/line/test");
    let Some(channel) = course.line_channel_id.clone() else {
        return Ok(flash_redirect(&app, &back, "error", NO_CHANNEL));
    };
    let recipients = recipients_of(&app, &auth, Some(&channel)).await?;
    let chosen: Vec<&TestRecipient> = fields
        .iter()
        .filter(|f| f.0 == "recipient")
        .filter_map(|f| f.1.parse::<i64>().ok())
        .filter_map(|rid| recipients.iter().find(|r| r.id == rid))
        .collect();
    if chosen.is_empty() {
        return Ok(flash_redirect(&app, &back, "error", "テスト配信先を 1 つ以上選んでください。"));
    }
    let mut steps = {
        let mut c = app.store.read().await?;
        store::current_steps(&mut c, id).await?
    };
    steps.sort_by_key(|s| super::dispatch::schedule_step(s).sort_key());
    let which = fields.iter().find(|f| f.0 == "message").map(|f| f.1.as_str()).unwrap_or("all");
    let step_ids: Vec<i64> = match which {
        "all" => steps.iter().map(|s| s.id).collect(),
        one => match one.parse::<i64>().ok().filter(|sid| steps.iter().any(|s| s.id == *sid)) {
            Some(sid) => vec![sid],
            None => return Ok(flash_redirect(&app, &back, "error", "送るメッセージを選んでください。")),
        },
    };
    if step_ids.is_empty() {
        return Ok(flash_redirect(
            &app,
            &back,
            "error",
            "送るメッセージがありません。先に「+メッセージ追加」から配信コンテンツを設定してください。",
        ));
    }
    let now = app.now();
    let mut tx = app.store.begin().await?;
    let mut requests = 0;
    for r in &chosen {
        for chunk in step_ids.chunks(super::fanout::MAX_MESSAGES) {
            let key = RetryKey::new(now).key;
            store::insert_test_send(
                &mut tx,
                id,
                &channel,
                &key,
                &super::dispatch::push_body(&r.line_user_id, chunk),
                now,
            )
            .await?;
            requests += 1;
        }
    }
    super::dispatch::queue_in(&mut tx, &app).await?;
    tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
    crate::jobs::wake(&app);
    tracing::info!(account_id = %auth.account.id, course_id = id, requests, "test send queued");
    Ok(flash_redirect(
        &app,
        &back,
        "success",
        &format!(
            "テスト配信を送信しました（{} 件の配信先へ {} 件のメッセージ）。結果はこの画面の「テスト配信の記録」に表示されます。",
            chosen.len(),
            step_ids.len()
        ),
    ))
}
