//! A course's 「LINEステップ配信設定」 (manual part 5): the Messaging API channel that delivers
//! its steps (saved after LINE confirms it: a token, the bot, the webhook registered and
//! tested), and 配信コンテンツ一覧 with 「+メッセージ追加」, edit, delete and the schedule's
//! preview. A change to a running sequence says whom it reaches and asks whether students
//! already in it get it too.

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use tsunagu_core::Feature;
use tsunagu_line::{Channel, LineError};
use tsunagu_store::courses::{self as store, Applies, Course, NewStep, StepDeleted, StepRow};
use tsunagu_store::media::{MediaFile, MediaStatus};

use super::console::{NAV, owned};
use super::schedule;
use crate::app::SharedApp;
use crate::clock::format_local;
use crate::web::chrome::Chrome;
use crate::web::context::flash_redirect;
use crate::web::error::AppError;
use crate::web::session::Auth;

/// LINE's limit on a text message, in UTF-16 code units (LINE NOTES §3).
pub const TEXT_MAX_UTF16: usize = 5000;
/// How long 「変更する」 waits for LINE's webhook test to be allowed (see the limiter).
const WEBHOOK_TEST_WAIT: std::time::Duration = std::time::Duration::from_secs(8);
/// 時刻指定 reaches at most this many days after the start.
pub const DAY_MAX: i64 = 3650;

fn kind_ja(kind: &str) -> &'static str {
    match kind {
        "image" => "画像",
        "audio" => "音声",
        "video" => "動画",
        _ => "テキスト",
    }
}

/// A step's 配信タイミング as the instructor wrote it.
pub fn timing_ja(timing: Option<(i64, i64)>) -> String {
    match timing {
        None => "購読開始直後".into(),
        Some((day, minute)) => format!("{day}日後 {:02}:{:02}", minute / 60, minute % 60),
    }
}

fn line_page(id: i64) -> String {
    format!("/courses/{id}/line")
}

/// The plan's refusal, when LINE features are not in it.
fn plan_refusal(auth: &Auth) -> Option<&'static str> {
    (!auth.account.plan.allows(Feature::LineLink)).then(|| Feature::LineLink.upgrade_message())
}

struct StepLine {
    id: i64,
    timing: String,
    position: i64,
    kind: &'static str,
    content: String,
}

struct Bot {
    name: String,
    picture_url: Option<String>,
    basic_id: String,
}

#[derive(Template)]
#[template(path = "course_line.html")]
struct LinePage {
    chrome: Chrome,
    id: i64,
    title: String,
    plan_message: Option<&'static str>,
    channel_id: String,
    bot: Option<Bot>,
    webhook_url: Option<String>,
    steps: Vec<StepLine>,
    next_due: Option<String>,
    problems: Vec<String>,
    month: Option<MonthView>,
    /// Paused for LINE's monthly limit until then.
    paused_until: Option<String>,
    /// `tsunagu demo`: its button that brings the next delivery forward.
    demo: bool,
}

/// The channel's month as the page shows it.
struct MonthView {
    quota: String,
    used: i64,
    forecast: i64,
    over: bool,
    /// LINE could not be asked (its message).
    unavailable: Option<String>,
}

/// How long the page waits for LINE's quota and consumption.
const MONTH_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

async fn month_of(app: &SharedApp, auth: &Auth, channel_id: &str) -> Result<MonthView, AppError> {
    let known = crate::line::known_channel(app, channel_id).await.map_err(AppError::Internal)?;
    let Some(known) = known.filter(|k| k.account == auth.account.id) else {
        return Ok(MonthView { quota: "—".into(), used: 0, forecast: 0, over: false, unavailable: None });
    };
    let ch = Channel { id: channel_id.to_string(), secret: known.secret, token_kind: Default::default() };
    let asked =
        tokio::time::timeout(MONTH_WAIT, async { (app.line.quota(&ch).await, app.line.consumption(&ch).await) }).await;
    let (quota, used) = match asked {
        Ok((Ok(q), Ok(used))) => (q, used),
        Ok((Err(e), _)) | Ok((_, Err(e))) => {
            return Ok(MonthView {
                quota: "—".into(),
                used: 0,
                forecast: 0,
                over: false,
                unavailable: Some(e.message_ja().to_string()),
            });
        }
        Err(_) => {
            return Ok(MonthView {
                quota: "—".into(),
                used: 0,
                forecast: 0,
                over: false,
                unavailable: Some("LINE からの応答がありませんでした。".into()),
            });
        }
    };
    let planned = super::log::planned_this_month(app, channel_id, app.now()).await?;
    let limit = quota.value.filter(|_| quota.kind == "limited");
    let m = super::log::Month { quota: limit, used, planned };
    Ok(MonthView {
        quota: limit.map(|q| format!("{q} 通")).unwrap_or_else(|| "上限なし".into()),
        used,
        forecast: m.forecast(),
        over: m.over(),
        unavailable: None,
    })
}

async fn step_lines(app: &SharedApp, auth: &Auth, course: &Course) -> Result<Vec<StepLine>, AppError> {
    let mut c = app.store.read().await?;
    let mut steps = store::current_steps(&mut c, course.id).await?;
    steps.sort_by_key(|s| super::dispatch::schedule_step(s).sort_key());
    let media = tsunagu_store::media::list(&mut c, auth.account.id).await?;
    Ok(steps
        .into_iter()
        .map(|s| StepLine {
            id: s.id,
            timing: timing_ja(s.timing),
            position: s.position,
            kind: kind_ja(&s.kind),
            content: match s.media_id.and_then(|m| media.iter().find(|f| f.id == m)) {
                Some(f) => f.original_name.clone(),
                None => excerpt(&s.body, 60),
            },
        })
        .collect())
}

fn excerpt(s: &str, n: usize) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(n) {
        Some((at, _)) => format!("{}…", &one_line[..at]),
        None => one_line,
    }
}

async fn line_page_of(
    app: &SharedApp,
    auth: &Auth,
    course: Course,
    typed_channel: Option<String>,
    problems: Vec<String>,
) -> Result<LinePage, AppError> {
    let steps = step_lines(app, auth, &course).await?;
    let (bot, next_due, paused_until) = {
        let mut c = app.store.read().await?;
        let (bot, paused) = match &course.line_channel_id {
            Some(ch) => (
                tsunagu_store::line::bot_profile(&mut c, auth.account.id, ch).await?,
                store::quota_paused_until(&mut c, ch).await?,
            ),
            None => (None, None),
        };
        (bot, store::course_next_due(&mut c, course.id).await?, paused)
    };
    let month = match (&course.line_channel_id, plan_refusal(auth)) {
        (Some(ch), None) => Some(month_of(app, auth, ch).await?),
        _ => None,
    };
    Ok(LinePage {
        chrome: Chrome::console(auth, NAV, "LINEステップ配信設定"),
        id: course.id,
        plan_message: plan_refusal(auth),
        channel_id: typed_channel.or_else(|| course.line_channel_id.clone()).unwrap_or_default(),
        bot: bot.map(|b| Bot { name: b.name, picture_url: b.picture_url, basic_id: b.basic_id }),
        webhook_url: course.line_channel_id.as_deref().map(|ch| crate::line::webhook_url(&app.config, ch)),
        steps,
        next_due: next_due.map(|t| format_local(t, &course.time_zone)),
        problems,
        month,
        paused_until: paused_until.map(|t| format_local(t, &course.time_zone)),
        demo: super::sample::is_demo(),
        title: course.title,
    })
}

/// 「LINEステップ配信設定」: the channel and 配信コンテンツ一覧.
pub async fn show(State(app): State<SharedApp>, auth: Auth, Path(id): Path<i64>) -> Result<Html<String>, AppError> {
    let course = owned(&app, &auth, id).await?;
    Ok(Html(line_page_of(&app, &auth, course, None, Vec::new()).await?.render()?))
}

#[derive(serde::Deserialize)]
pub struct ChannelForm {
    #[serde(default)]
    channel_id: String,
    #[serde(default)]
    channel_secret: String,
}

const SECRET_WRONG: &str = "チャネルIDまたはチャネルシークレットが正しくありません。LINE Developers で Messaging API チャネルの［チャネル基本設定］を開き、チャネルIDとチャネルシークレットを確かめて入力し直してください。";

/// 「変更する」: LINE confirms the channel (a token, the bot), it is saved for the account and
/// the course, its webhook is registered at LINE and tested. Nothing is saved when the secret
/// is wrong or another account holds the channel.
pub async fn save_channel(
    State(app): State<SharedApp>,
    auth: Auth,
    Path(id): Path<i64>,
    Form(form): Form<ChannelForm>,
) -> Result<Response, AppError> {
    let course = owned(&app, &auth, id).await?;
    let channel_id = form.channel_id.trim().to_string();
    let secret = form.channel_secret.trim().to_string();
    let refuse = |course: Course, problems: Vec<String>| {
        let app = app.clone();
        let auth = &auth;
        let typed = channel_id.clone();
        async move {
            let page = line_page_of(&app, auth, course, Some(typed), problems).await?;
            Ok::<Response, AppError>((StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response())
        }
    };
    if let Some(m) = plan_refusal(&auth) {
        return refuse(course, vec![m.to_string()]).await;
    }
    let mut problems = Vec::new();
    if channel_id.is_empty() || !channel_id.bytes().all(|b| b.is_ascii_digit()) || channel_id.len() > 20 {
        problems.push("チャネルIDは、LINE Developers の Messaging API チャネルの［チャネル基本設定］に表示される数字を入力してください。".to_string());
    }
    if secret.is_empty() {
        problems.push("チャネルシークレットを入力してください。［チャネル基本設定］の「チャネルシークレット」に表示される英数字です。".to_string());
    }
    if !problems.is_empty() {
        return refuse(course, problems).await;
    }
    let ch = Channel { id: channel_id.clone(), secret: secret.clone(), token_kind: Default::default() };
    match app.line.token(&ch).await {
        Ok(_) => {}
        Err(LineError::BadChannelCredentials) => return refuse(course, vec![SECRET_WRONG.into()]).await,
        Err(e) => {
            tracing::warn!(channel_id = %channel_id, error = %e, "LINE channel check failed");
            return refuse(
                course,
                vec![format!(
                    "LINE に接続できませんでした。時間をおいてもう一度「変更する」を押してください。（{}）",
                    e.message_ja()
                )],
            )
            .await;
        }
    }
    let bot = match app.line.bot_info(&ch).await {
        Ok(b) => b,
        Err(e) => {
            return refuse(
                course,
                vec![format!(
                    "公式アカウントの情報を取得できませんでした。時間をおいてもう一度お試しください。（{}）",
                    e.message_ja()
                )],
            )
            .await;
        }
    };
    if let Err(e) = crate::line::save_channel(&app, auth.account.id, &channel_id, &secret, &bot.user_id).await {
        return refuse(course, vec![e.message_ja().to_string()]).await;
    }
    let now = app.now();
    {
        let mut tx = app.store.begin().await?;
        let profile = tsunagu_store::line::BotProfile {
            name: bot.display_name.clone(),
            picture_url: bot.picture_url.clone(),
            basic_id: bot.basic_id.clone(),
        };
        tsunagu_store::line::set_bot_profile(&mut tx, auth.account.id, &channel_id, &profile, now).await?;
        store::set_channel(&mut tx, id, Some(&channel_id), now).await?;
        tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
    }
    tracing::info!(account_id = %auth.account.id, course_id = id, channel_id = %channel_id, "course channel saved");
    // The webhook: registered here, then LINE's own test of it.
    let url = crate::line::webhook_url(&app.config, &channel_id);
    let mut warnings = Vec::new();
    match app.line.set_webhook_endpoint(&ch, &url).await {
        Err(e) => warnings.push(format!(
            "Webhook URL を LINE に登録できませんでした（{}）。LINE Developers の［Messaging API設定］で Webhook URL に {url} を設定してください。",
            e.message_ja()
        )),
        Ok(()) => match app.line.webhook_endpoint(&ch).await {
            Ok(w) if !w.active => warnings.push(
                "Webhook がオフになっています。LINE Developers の［Messaging API設定］で「Webhook の利用」をオンにしてから、もう一度「変更する」を押してください。オフのままでは、友だち追加を受け取れず配信が始まりません。".into(),
            ),
            Ok(_) => {
                // LINE allows 60 tests an hour per channel; the shared limiter spaces them, so
                // a test right after another would keep the instructor waiting. Bounded here.
                let test = tokio::time::timeout(WEBHOOK_TEST_WAIT, app.line.test_webhook_endpoint(&ch, None)).await;
                match test {
                    Ok(Ok(t)) if t.success => {}
                    Ok(Ok(t)) => warnings.push(format!(
                        "LINE からの Webhook の疎通テストが失敗しました（HTTP {} {}）。{url} に LINE から届くか確認してください。",
                        t.status_code, t.reason
                    )),
                    Ok(Err(e)) => {
                        warnings.push(format!("Webhook の疎通テストを実行できませんでした（{}）。", e.message_ja()))
                    }
                    Err(_) => warnings.push(
                        "LINE の疎通テストは 1 時間に 60 回までのため、いまは実行できませんでした。1 分ほどおいてから、もう一度「変更する」を押してください。".into(),
                    ),
                }
            }
            Err(e) => warnings.push(format!("Webhook の設定を確認できませんでした（{}）。", e.message_ja())),
        },
    }
    if warnings.is_empty() {
        Ok(flash_redirect(
            &app,
            &line_page(id),
            "success",
            &format!("公式LINE「{}」を設定しました。Webhook の登録と疎通テストも完了しています。", bot.display_name),
        ))
    } else {
        let course = owned(&app, &auth, id).await?;
        let mut page = line_page_of(&app, &auth, course, None, Vec::new()).await?;
        page.problems =
            std::iter::once(format!("公式LINE「{}」を保存しましたが、次の点を確認してください。", bot.display_name))
                .chain(warnings)
                .collect();
        Ok((StatusCode::OK, Html(page.render()?)).into_response())
    }
}

/// The message form, as typed.
#[derive(Default, Clone, serde::Deserialize)]
pub struct StepForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    media_id: String,
    #[serde(default)]
    body: String,
    /// `immediate` (購読開始直後) or `at` (時刻指定).
    #[serde(default)]
    timing: String,
    #[serde(default)]
    day: String,
    #[serde(default)]
    time: String,
    #[serde(default)]
    position: String,
    /// `everyone` or `new` (edits of a running sequence).
    #[serde(default)]
    applies: String,
}

/// A message ready to store.
struct Parsed {
    kind: &'static str,
    body: String,
    media_id: Option<i64>,
    timing: Option<(i64, i64)>,
    position: i64,
}

impl StepForm {
    fn of(s: &StepRow) -> StepForm {
        StepForm {
            kind: s.kind.clone(),
            media_id: s.media_id.map(|m| m.to_string()).unwrap_or_default(),
            body: s.body.clone(),
            timing: if s.timing.is_some() { "at".into() } else { "immediate".into() },
            day: s.timing.map(|t| t.0.to_string()).unwrap_or_default(),
            time: s.timing.map(|t| format!("{:02}:{:02}", t.1 / 60, t.1 % 60)).unwrap_or_default(),
            position: s.position.to_string(),
            applies: String::new(),
        }
    }

    fn parse(&self, media: &[MediaFile]) -> Result<Parsed, Vec<(&'static str, String)>> {
        let mut p = Vec::new();
        let kind = match self.kind.as_str() {
            "text" => "text",
            "image" => "image",
            "audio" => "audio",
            "video" => "video",
            _ => {
                p.push(("kind", "配信メッセージの種類を、テキスト・画像・音声・動画から選んでください。".to_string()));
                "text"
            }
        };
        let mut media_id = None;
        let body = self.body.replace("\r\n", "\n");
        if kind == "text" {
            let units = body.encode_utf16().count();
            if body.trim().is_empty() {
                p.push(("body", "本文を入力してください。".to_string()));
            } else if units > TEXT_MAX_UTF16 {
                p.push((
                    "body",
                    format!("本文は LINE の上限の 5,000 文字以内にしてください（いま {units} 文字。絵文字などは 2 文字に数えます）。"),
                ));
            }
        } else {
            let label = kind_ja(kind);
            match self.media_id.trim().parse::<i64>().ok().and_then(|id| media.iter().find(|m| m.id == id)) {
                None => p.push(("media_id", format!("{label}のファイルを選んでください。"))),
                Some(m) if m.category != kind => p.push((
                    "media_id",
                    format!("選んだファイルは{label}ではありません。{label}のファイルを選んでください。"),
                )),
                Some(m) if m.status == MediaStatus::Processing => p.push((
                    "media_id",
                    format!(
                        "「{}」はまだ処理中です。メディアの状態が「完了」になってから選んでください。",
                        m.original_name
                    ),
                )),
                Some(m) if m.status == MediaStatus::Failed => p.push((
                    "media_id",
                    format!(
                        "「{}」は変換に失敗したため送れません。別のファイルを選ぶか、アップロードし直してください。",
                        m.original_name
                    ),
                )),
                Some(m) => media_id = Some(m.id),
            }
        }
        let timing = match self.timing.as_str() {
            "immediate" => None,
            "at" => {
                let day = self.day.trim().parse::<i64>().ok().filter(|d| (0..=DAY_MAX).contains(d));
                if day.is_none() {
                    p.push((
                        "day",
                        format!(
                            "何日後に送るかを 0 から {DAY_MAX} までの数字で入力してください（0 は購読開始の当日）。"
                        ),
                    ));
                }
                let minute = parse_time(self.time.trim());
                if minute.is_none() {
                    p.push(("time", "配信時刻を「09:00」のように入力してください。".to_string()));
                }
                day.zip(minute)
            }
            _ => {
                p.push(("timing", "配信タイミングを「購読開始直後」か「時刻指定」から選んでください。".to_string()));
                None
            }
        };
        let position = self.position.trim().parse::<i64>().ok().filter(|n| (1..=99).contains(n));
        if position.is_none() {
            p.push(("position", "通目は 1 から 99 までの数字で入力してください。".to_string()));
        }
        if !p.is_empty() {
            return Err(p);
        }
        Ok(Parsed {
            kind,
            body: if kind == "text" { body } else { String::new() },
            media_id,
            timing,
            position: position.unwrap_or(1),
        })
    }
}

/// "HH:MM" as minutes of the day.
fn parse_time(s: &str) -> Option<i64> {
    let s = s.replace('：', ":");
    let (h, m) = s.split_once(':')?;
    let h: i64 = h.parse().ok()?;
    let m: i64 = m.parse().ok()?;
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some(h * 60 + m)
}

struct MediaChoice {
    id: i64,
    category: String,
    name: String,
    status: &'static str,
}

#[derive(Template)]
#[template(path = "course_message_form.html")]
struct MessagePage {
    chrome: Chrome,
    id: i64,
    title: String,
    heading: &'static str,
    action: String,
    form: StepForm,
    media: Vec<MediaChoice>,
    problems: Vec<(&'static str, String)>,
    /// Editing: students already in the sequence whom the change reaches.
    affected: Option<i64>,
}

impl MessagePage {
    fn error(&self, field: &str) -> Option<&str> {
        self.problems.iter().find(|p| p.0 == field).map(|p| p.1.as_str())
    }
}

async fn media_of(app: &SharedApp, auth: &Auth) -> Result<Vec<MediaFile>, AppError> {
    let mut c = app.store.read().await?;
    Ok(tsunagu_store::media::list(&mut c, auth.account.id).await?)
}

fn choices(media: &[MediaFile]) -> Vec<MediaChoice> {
    media
        .iter()
        .filter(|m| m.status != MediaStatus::Failed)
        .map(|m| MediaChoice {
            id: m.id,
            category: m.category.clone(),
            name: m.original_name.clone(),
            status: m.status.label_ja(),
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn message_page(
    auth: &Auth,
    course: &Course,
    heading: &'static str,
    action: String,
    form: StepForm,
    media: &[MediaFile],
    problems: Vec<(&'static str, String)>,
    affected: Option<i64>,
) -> MessagePage {
    MessagePage {
        chrome: Chrome::console(auth, NAV, heading),
        id: course.id,
        title: course.title.clone(),
        heading,
        action,
        form,
        media: choices(media),
        problems,
        affected,
    }
}

fn plan_gate(app: &SharedApp, auth: &Auth, id: i64) -> Option<Response> {
    plan_refusal(auth).map(|m| flash_redirect(app, &line_page(id), "error", m))
}

/// 「+メッセージ追加」.
pub async fn new_form(State(app): State<SharedApp>, auth: Auth, Path(id): Path<i64>) -> Result<Response, AppError> {
    let course = owned(&app, &auth, id).await?;
    if let Some(r) = plan_gate(&app, &auth, id) {
        return Ok(r);
    }
    let next_position = {
        let mut c = app.store.read().await?;
        store::current_steps(&mut c, id).await?.iter().filter(|s| s.timing.is_none()).count() as i64 + 1
    };
    let form = StepForm {
        kind: "text".into(),
        timing: "immediate".into(),
        position: next_position.to_string(),
        ..Default::default()
    };
    let media = media_of(&app, &auth).await?;
    let page = message_page(
        &auth,
        &course,
        "メッセージ追加",
        format!("/courses/{id}/line/messages/new"),
        form,
        &media,
        Vec::new(),
        None,
    );
    Ok(Html(page.render()?).into_response())
}

pub async fn create(
    State(app): State<SharedApp>,
    auth: Auth,
    Path(id): Path<i64>,
    Form(form): Form<StepForm>,
) -> Result<Response, AppError> {
    let course = owned(&app, &auth, id).await?;
    if let Some(r) = plan_gate(&app, &auth, id) {
        return Ok(r);
    }
    let media = media_of(&app, &auth).await?;
    let parsed = match form.parse(&media) {
        Ok(p) => p,
        Err(problems) => {
            let page = message_page(
                &auth,
                &course,
                "メッセージ追加",
                format!("/courses/{id}/line/messages/new"),
                form,
                &media,
                problems,
                None,
            );
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response());
        }
    };
    let now = app.now();
    let mut tx = app.store.begin().await?;
    let step = NewStep {
        kind: parsed.kind,
        body: &parsed.body,
        media_id: parsed.media_id,
        timing: parsed.timing,
        position: parsed.position,
        valid_from: 0,
    };
    let step_id = store::add_step(&mut tx, id, &step, now).await?;
    // Students already in the sequence get the new message at its time (one that has passed
    // goes out at once): the dispatcher plans them again.
    store::replan(&mut tx, id, now).await?;
    super::dispatch::queue_in(&mut tx, &app).await?;
    tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
    crate::jobs::wake(&app);
    tracing::info!(account_id = %auth.account.id, course_id = id, step_id, "course message added");
    Ok(flash_redirect(&app, &line_page(id), "success", "メッセージを追加しました。"))
}

async fn owned_step(app: &SharedApp, course: &Course, step: i64) -> Result<StepRow, AppError> {
    let mut c = app.store.read().await?;
    store::current_step(&mut c, course.id, step).await?.ok_or(AppError::NotFound)
}

pub async fn edit_form(
    State(app): State<SharedApp>,
    auth: Auth,
    Path((id, step)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let course = owned(&app, &auth, id).await?;
    let row = owned_step(&app, &course, step).await?;
    if let Some(r) = plan_gate(&app, &auth, id) {
        return Ok(r);
    }
    let affected = {
        let mut c = app.store.read().await?;
        store::affected_by(&mut c, &row).await?
    };
    let media = media_of(&app, &auth).await?;
    let mut form = StepForm::of(&row);
    form.applies = "everyone".into();
    let page = message_page(
        &auth,
        &course,
        "メッセージの編集",
        format!("/courses/{id}/line/messages/{step}/edit"),
        form,
        &media,
        Vec::new(),
        Some(affected),
    );
    Ok(Html(page.render()?).into_response())
}

pub async fn update(
    State(app): State<SharedApp>,
    auth: Auth,
    Path((id, step)): Path<(i64, i64)>,
    Form(form): Form<StepForm>,
) -> Result<Response, AppError> {
    let course = owned(&app, &auth, id).await?;
    let row = owned_step(&app, &course, step).await?;
    if let Some(r) = plan_gate(&app, &auth, id) {
        return Ok(r);
    }
    let media = media_of(&app, &auth).await?;
    let affected = {
        let mut c = app.store.read().await?;
        store::affected_by(&mut c, &row).await?
    };
    let applies = match form.applies.as_str() {
        "everyone" => Some(Applies::Everyone),
        "new" => Some(Applies::NewOnly),
        _ => None,
    };
    let parsed = form.parse(&media);
    let parsed = match (parsed, applies) {
        (Ok(p), Some(a)) => (p, a),
        (parsed, applies) => {
            let mut problems = parsed.err().unwrap_or_default();
            if applies.is_none() {
                problems
                    .push(("applies", "この変更を、配信中の受講生にも反映するかどうかを選んでください。".to_string()));
            }
            let page = message_page(
                &auth,
                &course,
                "メッセージの編集",
                format!("/courses/{id}/line/messages/{step}/edit"),
                form,
                &media,
                problems,
                Some(affected),
            );
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response());
        }
    };
    let (p, applies) = parsed;
    let now = app.now();
    let mut tx = app.store.begin().await?;
    let new = NewStep {
        kind: p.kind,
        body: &p.body,
        media_id: p.media_id,
        timing: p.timing,
        position: p.position,
        valid_from: 0,
    };
    let Some(_) = store::update_step(&mut tx, id, step, &new, applies, now).await? else {
        return Err(AppError::NotFound);
    };
    super::dispatch::queue_in(&mut tx, &app).await?;
    tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
    crate::jobs::wake(&app);
    tracing::info!(account_id = %auth.account.id, course_id = id, step_id = step, everyone = applies == Applies::Everyone, "course message updated");
    let msg = match applies {
        Applies::Everyone => "メッセージを保存しました。配信中の受講生のこれからの配信にも反映します。",
        Applies::NewOnly => {
            "メッセージを保存しました。これから購読を開始する受講生に反映します（配信中の受講生には元の内容が届きます）。"
        }
    };
    Ok(flash_redirect(&app, &line_page(id), "success", msg))
}

pub async fn delete(
    State(app): State<SharedApp>,
    auth: Auth,
    Path((id, step)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    owned(&app, &auth, id).await?;
    let mut c = app.store.conn().await?;
    match store::delete_step(&mut c, id, step, app.now()).await? {
        StepDeleted::Yes => {
            tracing::info!(account_id = %auth.account.id, course_id = id, step_id = step, "course message deleted");
            Ok(flash_redirect(
                &app,
                &line_page(id),
                "success",
                "メッセージを削除しました。これから配信される受講生には届きません。",
            ))
        }
        StepDeleted::Sending => Ok(flash_redirect(
            &app,
            &line_page(id),
            "error",
            "このメッセージはいま LINE へ送信中のため削除できません。送信が終わってから（通常は数分以内）もう一度削除してください。",
        )),
        StepDeleted::NotFound => Err(AppError::NotFound),
    }
}

struct Bubble {
    kind: &'static str,
    text: String,
    media_name: String,
    image_url: Option<String>,
}

struct Day {
    label: String,
    slots: Vec<(String, Vec<Bubble>)>,
}

#[derive(Template)]
#[template(path = "course_preview.html")]
struct PreviewPage {
    chrome: Chrome,
    id: i64,
    title: String,
    start: String,
    days: Vec<Day>,
}

/// The whole schedule as a student who subscribes now would receive it.
pub async fn preview(State(app): State<SharedApp>, auth: Auth, Path(id): Path<i64>) -> Result<Html<String>, AppError> {
    let course = owned(&app, &auth, id).await?;
    let (steps, media) = {
        let mut c = app.store.read().await?;
        (store::current_steps(&mut c, id).await?, tsunagu_store::media::list(&mut c, auth.account.id).await?)
    };
    let tz = jiff::tz::TimeZone::get(&course.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    let now = app.now();
    let plan = schedule::plan(&steps.iter().map(super::dispatch::schedule_step).collect::<Vec<_>>(), now, &tz);
    let mut days: Vec<Day> = Vec::new();
    for slot in plan {
        let local = jiff::Timestamp::from_millisecond(slot.at).unwrap_or_default().to_zoned(tz.clone());
        let label = local.strftime("%Y年%-m月%-d日").to_string();
        let at = local.strftime("%H:%M").to_string();
        let bubbles = slot
            .steps
            .iter()
            .filter_map(|sid| steps.iter().find(|s| s.id == *sid))
            .map(|s| {
                let m = s.media_id.and_then(|m| media.iter().find(|f| f.id == m));
                Bubble {
                    kind: kind_ja(&s.kind),
                    text: s.body.clone(),
                    media_name: m.map(|m| m.original_name.clone()).unwrap_or_default(),
                    image_url: m
                        .filter(|m| m.status == MediaStatus::Ready && !m.preview_name.is_empty())
                        .map(|m| crate::media::store::url(&app.config, &m.preview_name)),
                }
            })
            .collect();
        match days.last_mut() {
            Some(d) if d.label == label => d.slots.push((at, bubbles)),
            _ => days.push(Day { label, slots: vec![(at, bubbles)] }),
        }
    }
    let page = PreviewPage {
        chrome: Chrome::console(&auth, NAV, "配信プレビュー"),
        id,
        start: format_local(now, &course.time_zone),
        days,
        title: course.title,
    };
    Ok(Html(page.render()?))
}

/// A step in a few words (a text's start, or its kind).
pub fn summary(s: &StepRow) -> String {
    if s.kind == "text" { excerpt(&s.body, 30) } else { kind_ja(&s.kind).to_string() }
}

/// ［配信を再開する］ after a monthly-limit pause (the LINE plan was raised): what waited goes
/// out in order; if the limit still holds, LINE refuses again and the pause comes back.
pub async fn resume(State(app): State<SharedApp>, auth: Auth, Path(id): Path<i64>) -> Result<Response, AppError> {
    let course = owned(&app, &auth, id).await?;
    if let Some(r) = plan_gate(&app, &auth, id) {
        return Ok(r);
    }
    let Some(channel) = course.line_channel_id else { return Err(AppError::NotFound) };
    let n = super::quota::resume(&app, &channel).await?;
    tracing::info!(account_id = %auth.account.id, course_id = id, resumed = n, "deliveries resumed by the instructor");
    Ok(flash_redirect(
        &app,
        &line_page(id),
        "success",
        "配信を再開しました。一時停止中に配信予定だったメッセージから順にお届けします。",
    ))
}

/// 「次の配信を今すぐ送る（デモ）」: the demo's way to not wait a day. Each active student's next
/// delivery comes forward to now, the rest of their schedule with it.
pub async fn due_now(State(app): State<SharedApp>, auth: Auth, Path(id): Path<i64>) -> Result<Response, AppError> {
    owned(&app, &auth, id).await?;
    if !super::sample::is_demo() {
        return Err(AppError::NotFound);
    }
    let now = app.now();
    let mut tx = app.store.begin().await?;
    let n = store::bring_next_forward(&mut tx, id, now).await?;
    super::dispatch::queue_in(&mut tx, &app).await?;
    tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
    crate::jobs::wake(&app);
    Ok(flash_redirect(
        &app,
        &line_page(id),
        "success",
        &format!(
            "{n} 人の受講生の次のメッセージを、いま配信しています。LINE サンドボックスのトーク画面で確認できます。"
        ),
    ))
}
