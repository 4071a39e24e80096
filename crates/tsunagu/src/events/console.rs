//! The organizer's event pages: 申込状況サマリー (`/events`), an event's page, and its form
//! (create, edit), with copy and delete. Another account's event answers 404.

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use tsunagu_store::events::{self as store, Deleted, EditRefused, Event, EventState};

use super::form::{EventForm, Problem, group};
use crate::app::SharedApp;
use crate::clock::format_local;
use crate::web::chrome::Chrome;
use crate::web::context::flash_redirect;
use crate::web::error::AppError;
use crate::web::session::Auth;

const NAV: &str = "events";

struct SummaryRow {
    id: i64,
    title: String,
    starts: String,
    state: &'static str,
    state_code: &'static str,
    applied: i64,
    awaiting_payment: i64,
    completed: i64,
    cancelled: i64,
    seats_left: i64,
    capacity: i64,
}

#[derive(Template)]
#[template(path = "events.html")]
struct SummaryPage {
    chrome: Chrome,
    rows: Vec<SummaryRow>,
}

/// 申込状況サマリー: every event with its applications counted by status and its seats left.
pub async fn summary(State(app): State<SharedApp>, auth: Auth) -> Result<Html<String>, AppError> {
    let mut c = app.store.read().await?;
    let tz = &auth.account.time_zone;
    let rows = store::summaries(&mut c, auth.account.id)
        .await?
        .into_iter()
        .map(|s| SummaryRow {
            id: s.event.id,
            starts: format_local(s.event.starts_at, tz),
            state: s.event.state.label_ja(),
            state_code: s.event.state.code(),
            applied: s.applied,
            awaiting_payment: s.awaiting_payment,
            completed: s.completed,
            cancelled: s.cancelled,
            seats_left: s.seats_left(),
            capacity: s.event.capacity,
            title: s.event.title,
        })
        .collect();
    let page = SummaryPage { chrome: Chrome::console(&auth, NAV, "申込状況サマリー"), rows };
    Ok(Html(page.render()?))
}

/// Each field's message, for the form to show beside it.
#[derive(Default)]
struct Errors {
    title: Option<String>,
    description: Option<String>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    capacity: Option<String>,
    companions_max: Option<String>,
    apply_from: Option<String>,
    apply_until: Option<String>,
    cancel_until: Option<String>,
    payment_note: Option<String>,
    payment_methods: Option<String>,
    state: Option<String>,
    tickets: Vec<String>,
}

impl Errors {
    fn of(problems: &[Problem]) -> Errors {
        let mut e = Errors::default();
        for p in problems {
            let slot = match p.field {
                "title" => &mut e.title,
                "description" => &mut e.description,
                "starts_at" => &mut e.starts_at,
                "ends_at" => &mut e.ends_at,
                "capacity" => &mut e.capacity,
                "companions_max" => &mut e.companions_max,
                "apply_from" => &mut e.apply_from,
                "apply_until" => &mut e.apply_until,
                "cancel_until" => &mut e.cancel_until,
                "payment_note" => &mut e.payment_note,
                "payment_methods" => &mut e.payment_methods,
                "state" => &mut e.state,
                _ => {
                    e.tickets.push(p.message.clone());
                    continue;
                }
            };
            slot.get_or_insert(p.message.clone());
        }
        e
    }
}

#[derive(Template)]
#[template(path = "event_form.html")]
struct FormPage {
    chrome: Chrome,
    heading: String,
    action: String,
    back: String,
    form: EventForm,
    summary: Vec<String>,
    errors: Errors,
    states: [(&'static str, &'static str); 3],
}

const STATES: [(&str, &str); 3] = [
    (EventState::Draft.code(), "下書き（公開しない）"),
    (EventState::Published.code(), "公開（申込を受け付ける）"),
    (EventState::Closed.code(), "受付終了"),
];

fn form_page(
    auth: &Auth,
    heading: &str,
    action: String,
    back: String,
    form: EventForm,
    problems: &[Problem],
) -> FormPage {
    FormPage {
        chrome: Chrome::console(auth, NAV, heading),
        heading: heading.into(),
        action,
        back,
        form,
        summary: problems.iter().map(|p| p.message.clone()).collect(),
        errors: Errors::of(problems),
        states: STATES,
    }
}

fn refused(page: FormPage) -> Result<Response, AppError> {
    Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response())
}

pub async fn new_form(auth: Auth) -> Result<Html<String>, AppError> {
    let page = form_page(&auth, "新規イベント作成", "/events/new".into(), "/events".into(), EventForm::blank(), &[]);
    Ok(Html(page.render()?))
}

pub async fn create(
    State(app): State<SharedApp>,
    auth: Auth,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let form = EventForm::from_fields(&fields);
    let parsed = match form.parse(&auth.account.time_zone, app.now()) {
        Ok(p) => payable(&app, &auth, p).await?,
        Err(problems) => Err(problems),
    };
    let parsed = match parsed {
        Ok(p) => p,
        Err(problems) => {
            return refused(form_page(
                &auth,
                "新規イベント作成",
                "/events/new".into(),
                "/events".into(),
                form,
                &problems,
            ));
        }
    };
    let key = crate::crypto::random_token(16);
    let mut tx = app.store.begin().await?;
    let id = store::create(&mut tx, auth.account.id, &key, &parsed.input(), &parsed.new_tickets(), app.now()).await?;
    tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
    tracing::info!(account_id = %auth.account.id, event_id = id, "event created");
    Ok(flash_redirect(&app, &format!("/events/{id}"), "success", "イベントを作成しました。"))
}

/// Card and konbini are paid through the organizer's Stripe account: they need it connected
/// (基本設定 > 決済（Stripe）), and konbini needs the account's konbini capability. Any priced
/// ticket, however paid, is a sale at a distance, so a published event with one needs the
/// organizer's 特定商取引法に基づく表記 (Stripe requires the page for konbini, too).
async fn payable(
    app: &SharedApp,
    auth: &Auth,
    p: super::form::Parsed,
) -> Result<Result<super::form::Parsed, Vec<Problem>>, AppError> {
    let wants = |m: &str| p.payment_methods.split(',').any(|x| x == m);
    let message = if wants("card") || wants("konbini") {
        let connection = {
            let mut c = app.store.read().await?;
            tsunagu_store::stripe::get_connection(&mut c, auth.account.id).await?
        };
        match &connection {
            None => Some("カード・コンビニ払いを受け付けるには、先に 基本設定 > 決済（Stripe） で Stripe と接続してください。".to_string()),
            Some(c) if wants("konbini") && !c.methods.is_empty() && !c.methods.iter().any(|m| m == "konbini") => Some(
                "接続している Stripe アカウントでは、コンビニ払いがまだ有効になっていません。Stripe ダッシュボードの［設定］→［決済手段］でコンビニ決済を有効にしてから選んでください（本番では Stripe の審査があります）。".to_string(),
            ),
            Some(_) => None,
        }
    } else {
        None
    };
    let message = match message {
        Some(m) => Some(m),
        None if p.state != tsunagu_store::events::EventState::Draft
            && p.tickets.iter().any(|t| t.2 > 0)
            && !crate::payments::legal::load(app, auth.account.id).await?.is_some_and(|n| n.complete()) =>
        {
            Some("有料チケットのあるイベントを公開するには、先に［特定商取引法に基づく表記］のすべての項目を入力してください（通信販売として法律で表示が義務づけられています）。下書きなら今のまま保存できます。".into())
        }
        None => None,
    };
    Ok(match message {
        Some(message) => Err(vec![Problem { field: "payment_methods", message }]),
        None => Ok(p),
    })
}

async fn owned(app: &SharedApp, auth: &Auth, id: i64) -> Result<Event, AppError> {
    let mut c = app.store.read().await?;
    store::get(&mut c, auth.account.id, id).await?.ok_or(AppError::NotFound)
}

pub async fn edit_form(
    State(app): State<SharedApp>,
    auth: Auth,
    Path(id): Path<i64>,
) -> Result<Html<String>, AppError> {
    let event = owned(&app, &auth, id).await?;
    let form = EventForm::of(&event, &auth.account.time_zone);
    let page = form_page(&auth, "イベントの編集", format!("/events/{id}/edit"), format!("/events/{id}"), form, &[]);
    Ok(Html(page.render()?))
}

pub async fn update(
    State(app): State<SharedApp>,
    auth: Auth,
    Path(id): Path<i64>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let form = EventForm::from_fields(&fields);
    let page = |form: EventForm, problems: &[Problem]| {
        form_page(&auth, "イベントの編集", format!("/events/{id}/edit"), format!("/events/{id}"), form, problems)
    };
    let parsed = match form.parse(&auth.account.time_zone, app.now()) {
        Ok(p) => payable(&app, &auth, p).await?,
        Err(problems) => Err(problems),
    };
    let parsed = match parsed {
        Ok(p) => p,
        Err(problems) => {
            owned(&app, &auth, id).await?;
            return refused(page(form, &problems));
        }
    };
    let mut tx = app.store.begin().await?;
    let result =
        store::update(&mut tx, auth.account.id, id, &parsed.input(), &parsed.ticket_edits(), app.now()).await?;
    match result {
        None => Err(AppError::NotFound),
        Some(Err(why)) => {
            tx.rollback().await.map_err(tsunagu_store::StoreError::from)?;
            let (field, message) = match why {
                EditRefused::CapacityBelowTaken { taken } => (
                    "capacity",
                    format!(
                        "すでに {} 人が申し込んでいるため、定員を {} 人より少なくはできません。",
                        group(taken),
                        group(taken)
                    ),
                ),
                EditRefused::TicketLimitBelowTaken { name, taken } => (
                    "tickets",
                    format!(
                        "「{name}」はすでに {} 人が申し込んでいるため、販売数の上限を {} より少なくはできません。",
                        group(taken),
                        group(taken)
                    ),
                ),
                EditRefused::TicketInUse { name, taken } => (
                    "tickets",
                    format!(
                        "「{name}」は申込で使われているため削除できません。販売をやめる場合は、販売数の上限を今の申込数（{}）にしてください。",
                        group(taken)
                    ),
                ),
            };
            refused(page(form, &[Problem { field, message }]))
        }
        Some(Ok(updated)) => {
            if updated.zoom_revision.is_some() {
                super::zoom::queue_sync(&mut tx, &app, id).await?;
            }
            if updated.moved {
                super::moved::queue(&mut tx, &app, id, parsed.starts_at, app.now()).await?;
            }
            tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
            if updated.zoom_revision.is_some() || updated.moved {
                crate::jobs::wake(&app);
            }
            tracing::info!(account_id = %auth.account.id, event_id = id, zoom = updated.zoom_revision.is_some(), "event updated");
            let msg = match (updated.zoom_revision.is_some(), updated.moved) {
                (true, true) => {
                    "イベントを保存しました。Zoom のミーティング／ウェビナーにも反映し、参加URLをお送りした方に日時変更のお知らせを送ります。"
                }
                (true, false) => "イベントを保存しました。Zoom のミーティング／ウェビナーにも反映しています。",
                (false, true) => "イベントを保存しました。参加URLをお送りした方に日時変更のお知らせを送ります。",
                (false, false) => "イベントを保存しました。",
            };
            Ok(flash_redirect(&app, &format!("/events/{id}"), "success", msg))
        }
    }
}

struct TicketLine {
    name: String,
    price: String,
    limit: String,
}

#[derive(Template)]
#[template(path = "event.html")]
struct EventPage {
    chrome: Chrome,
    id: i64,
    title: String,
    state: &'static str,
    state_code: &'static str,
    when: String,
    apply_from: String,
    apply_until: String,
    capacity: i64,
    seats_taken: i64,
    seats_left: i64,
    companions_max: i64,
    tickets: Vec<TicketLine>,
    description_html: String,
    /// The public page's address, once the event is not a draft.
    public_url: Option<String>,
    zoom: Option<super::zoom::StateView>,
    applications: Vec<super::applications::ApplicationRow>,
    /// The search box's text.
    q: String,
    /// `?q=…` for the CSV link when searching.
    csv_query: String,
}

fn price(yen: i64) -> String {
    if yen == 0 { "無料".into() } else { format!("{}円", group(yen)) }
}

#[derive(serde::Deserialize)]
pub struct Search {
    #[serde(default)]
    q: String,
}

impl Search {
    /// The query as searched: trimmed, at most 100 characters.
    pub fn q(&self) -> &str {
        let q = self.q.trim();
        match q.char_indices().nth(100) {
            Some((at, _)) => &q[..at],
            None => q,
        }
    }
}

pub async fn show(
    State(app): State<SharedApp>,
    auth: Auth,
    Path(id): Path<i64>,
    axum::extract::Query(search): axum::extract::Query<Search>,
) -> Result<Html<String>, AppError> {
    let q = search.q().to_string();
    let (e, zoom, list) = {
        let mut c = app.store.read().await?;
        let e = store::get(&mut c, auth.account.id, id).await?.ok_or(AppError::NotFound)?;
        let zoom = store::zoom_settings(&mut c, auth.account.id, id).await?;
        let list = tsunagu_store::applications::for_event(&mut c, auth.account.id, id, &q).await?;
        let payments = super::applications::Payments::load(&mut c, id).await?;
        (e, zoom, (list, payments))
    };
    let (list, payments) = list;
    let tz = &auth.account.time_zone;
    let page = EventPage {
        zoom: zoom.as_ref().map(super::zoom::state_view),
        applications: super::applications::rows(list, &payments, &auth.account.time_zone),
        csv_query: if q.is_empty() {
            String::new()
        } else {
            format!("?{}", serde_urlencoded::to_string([("q", q.as_str())]).unwrap_or_default())
        },
        q,
        chrome: Chrome::console(&auth, NAV, &e.title),
        id: e.id,
        state: e.state.label_ja(),
        state_code: e.state.code(),
        when: super::form::span(e.starts_at, e.ends_at, tz),
        apply_from: format_local(e.apply_from, tz),
        apply_until: format_local(e.apply_until, tz),
        capacity: e.capacity,
        seats_taken: e.seats_taken,
        seats_left: e.capacity - e.seats_taken,
        companions_max: e.companions_max,
        tickets: e
            .tickets
            .iter()
            .map(|t| TicketLine {
                name: t.name.clone(),
                price: price(t.price_yen),
                limit: match t.limit_count {
                    Some(l) => format!("{} 人まで（申込 {} 人）", group(l), group(t.taken)),
                    None => format!("上限なし（申込 {} 人）", group(t.taken)),
                },
            })
            .collect(),
        description_html: super::text::linkify(&e.description),
        public_url: (e.state != EventState::Draft).then(|| super::public::url(&app.config, &e)),
        title: e.title,
    };
    Ok(Html(page.render()?))
}

pub async fn copy(State(app): State<SharedApp>, auth: Auth, Path(id): Path<i64>) -> Result<Response, AppError> {
    let e = owned(&app, &auth, id).await?;
    let title: String = format!("{}（コピー）", e.title).chars().take(200).collect();
    let key = crate::crypto::random_token(16);
    let mut tx = app.store.begin().await?;
    let copy = store::copy(&mut tx, auth.account.id, id, &key, &title, app.now()).await?.ok_or(AppError::NotFound)?;
    tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
    tracing::info!(account_id = %auth.account.id, event_id = id, copy_id = copy, "event copied");
    Ok(flash_redirect(
        &app,
        &format!("/events/{copy}/edit"),
        "success",
        "イベントをコピーしました。下書きとして保存されています。内容を確認して保存してください。",
    ))
}

pub async fn delete(State(app): State<SharedApp>, auth: Auth, Path(id): Path<i64>) -> Result<Response, AppError> {
    let mut tx = app.store.begin().await?;
    let deleted = store::delete(&mut tx, auth.account.id, id).await?;
    tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
    match deleted {
        Deleted::Yes => {
            tracing::info!(account_id = %auth.account.id, event_id = id, "event deleted");
            Ok(flash_redirect(&app, "/events", "success", "イベントを削除しました。"))
        }
        Deleted::NotFound => Err(AppError::NotFound),
        Deleted::HasApplications(n) => Ok(flash_redirect(
            &app,
            &format!("/events/{id}"),
            "error",
            &format!(
                "キャンセルされていない申込が {} 件あるため、削除できません。申込の受付をやめる場合は、状態を「受付終了」にしてください。",
                group(n)
            ),
        )),
    }
}
