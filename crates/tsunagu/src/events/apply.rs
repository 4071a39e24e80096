//! Applying, on the public host (phone first): the form (`/e/{key}/apply`), its refusals, each
//! with a Japanese message and everything typed kept, and the participant's own page of the
//! application (`/a/{access_key}`).
//!
//! Every check runs before anything is stored. Seats are held by `store::apply` in the same
//! transaction that stores the application and, for a ¥0 ticket, completes it and queues each
//! person's registration and mail. The form carries a key made when it was shown, so sending it
//! twice (double click, reload, back button) finds the application it made.

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use tsunagu_core::Email;
use tsunagu_store::StoreError;
use tsunagu_store::applications as apps;
use tsunagu_store::events::{self as store, Applied, Event, NewApplication, NewPerson};

use super::form::group;
use crate::app::SharedApp;
use crate::crypto::random_token;
use crate::web::chrome::Chrome;
use crate::web::context::RequestContext;
use crate::web::error::AppError;

/// The fields asked of each person, as typed.
#[derive(Debug, Clone, Default)]
pub struct PersonFields {
    pub name_kanji: String,
    pub name_kana: String,
    pub email: String,
    pub phone: String,
    pub company: String,
}

#[derive(Debug, Clone, Default)]
struct ApplyForm {
    submit_key: String,
    ticket: String,
    /// `stripe` (card or konbini) or `bank_transfer`, when the event offers both.
    payment: String,
    companions: usize,
    /// Index 0 is the representative; then up to the event's companions.
    people: Vec<PersonFields>,
}

impl ApplyForm {
    fn from_fields(fields: &[(String, String)], max_companions: usize) -> ApplyForm {
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.trim().to_string()).unwrap_or_default();
        let companions = get("companions").parse::<usize>().unwrap_or(0).min(max_companions);
        ApplyForm {
            submit_key: get("submit_key"),
            ticket: get("ticket"),
            payment: get("payment"),
            companions,
            people: (0..=max_companions)
                .map(|i| PersonFields {
                    name_kanji: get(&format!("name_kanji_{i}")),
                    name_kana: get(&format!("name_kana_{i}")),
                    email: get(&format!("email_{i}")),
                    phone: get(&format!("phone_{i}")),
                    company: get(&format!("company_{i}")),
                })
                .collect(),
        }
    }
}

struct TicketChoice {
    id: i64,
    label: String,
    sold_out: bool,
}

#[derive(Template)]
#[template(path = "apply_form.html")]
struct ApplyPage {
    chrome: Chrome,
    key: String,
    title: String,
    when: String,
    seats_left: i64,
    tickets: Vec<TicketChoice>,
    form: ApplyForm,
    max_companions: usize,
    /// Companions get their own join URL (each is registered at Zoom with their own email).
    companion_email_required: bool,
    /// 同伴者入力設定 as the form applies it.
    fields: super::companions::Fields,
    problems: Vec<String>,
    closed: Option<String>,
    /// How priced tickets are paid: the choice is shown when there are two.
    pay_online: Option<String>,
    pay_bank: bool,
    legal: bool,
}

impl ApplyPage {
    /// How a companion field is asked: `off`, `optional` or `required`.
    fn ask(&self, name: &str) -> &'static str {
        self.fields.get(name).code()
    }

    fn person(&self, i: impl std::borrow::Borrow<usize>) -> &PersonFields {
        &self.form.people[*i.borrow()]
    }
}

struct Loaded {
    legal: bool,
    event: Event,
    tz: String,
    registration: bool,
    hosts: Vec<String>,
    fields: super::companions::Fields,
}

async fn load(app: &SharedApp, key: &str) -> Result<Loaded, AppError> {
    let (f, legal) = {
        let mut c = app.store.read().await?;
        let f = store::public_form(&mut c, key).await?.ok_or(AppError::NotFound)?;
        let legal = f.event.tickets.iter().any(|t| t.price_yen > 0)
            && crate::payments::legal::load_on(&mut c, f.event.account_id).await?.is_some_and(|n| n.complete());
        (f, legal)
    };
    let registration = f.zoom_options.as_deref().is_some_and(|o| super::zoom::Options::parse(o).registration);
    let fields = super::companions::Fields::parse(&f.companion_fields).effective(registration);
    Ok(Loaded { legal, event: f.event, tz: f.time_zone, registration, hosts: f.host_emails, fields })
}

fn page(ctx: &RequestContext, l: &Loaded, form: ApplyForm, problems: Vec<String>, now: i64) -> ApplyPage {
    let (e, tz, registration) = (&l.event, l.tz.as_str(), l.registration);
    ApplyPage {
        fields: l.fields,
        chrome: Chrome::public(ctx, &format!("{} のお申し込み", e.title)),
        key: e.public_key.clone(),
        title: e.title.clone(),
        when: super::form::span(e.starts_at, e.ends_at, tz),
        seats_left: (e.capacity - e.seats_taken).max(0),
        tickets: e
            .tickets
            .iter()
            .map(|t| {
                let left = t.limit_count.map(|l| (l - t.taken).max(0));
                let price = if t.price_yen == 0 { "無料".into() } else { format!("{}円", group(t.price_yen)) };
                TicketChoice {
                    id: t.id,
                    label: match left {
                        Some(0) => format!("{}（{price}）売り切れ", t.name),
                        Some(l) => format!("{}（{price}）残り {} 枚", t.name, group(l)),
                        None => format!("{}（{price}）", t.name),
                    },
                    sold_out: left == Some(0),
                }
            })
            .collect(),
        max_companions: e.companions_max.clamp(0, 9) as usize,
        companion_email_required: registration,
        legal: l.legal,
        pay_online: online_label(e),
        pay_bank: e.payment_methods.iter().any(|m| m == "bank_transfer"),
        form,
        problems,
        closed: super::public::closed_reason(e, now, tz),
    }
}

/// The online methods the event offers, as the form names them (`None`: bank transfer only).
fn online_label(e: &Event) -> Option<String> {
    let card = e.payment_methods.iter().any(|m| m == "card");
    let konbini = e.payment_methods.iter().any(|m| m == "konbini");
    match (card, konbini) {
        (true, true) => Some("カード・コンビニ".into()),
        (true, false) => Some("カード".into()),
        (false, true) => Some("コンビニ".into()),
        (false, false) => None,
    }
}

#[derive(Deserialize)]
pub struct TicketQuery {
    #[serde(default)]
    ticket: Option<i64>,
}

/// The application form.
pub async fn show(
    State(app): State<SharedApp>,
    ctx: RequestContext,
    Path(key): Path<String>,
    Query(q): Query<TicketQuery>,
) -> Result<Response, AppError> {
    let l = load(&app, &key).await?;
    let e = &l.event;
    let max = e.companions_max.clamp(0, 9) as usize;
    let ticket = q.ticket.filter(|t| e.tickets.iter().any(|x| x.id == *t)).or(e.tickets.first().map(|t| t.id));
    let form = ApplyForm {
        submit_key: random_token(18),
        ticket: ticket.map(|t| t.to_string()).unwrap_or_default(),
        payment: String::new(),
        companions: 0,
        people: vec![PersonFields::default(); max + 1],
    };
    let csp = crate::payments::checkout_csp(&app.config);
    Ok((
        [(axum::http::header::CONTENT_SECURITY_POLICY, csp)],
        Html(page(&ctx, &l, form, Vec::new(), app.now()).render()?),
    )
        .into_response())
}

/// A Japanese phone number as people type it: digits (full-width too), hyphens, spaces,
/// parentheses and a leading +81. Returns the digits, or `None`.
pub fn phone_digits(s: &str) -> Option<String> {
    let mut digits = String::new();
    for c in s.trim().chars() {
        match c {
            '0'..='9' => digits.push(c),
            '０'..='９' => digits.push(char::from_u32(c as u32 - 0xFEE0)?),
            '-' | 'ー' | '－' | '‐' | ' ' | '\u{3000}' | '(' | ')' | '（' | '）' | '+' | '＋' => {}
            _ => return None,
        }
    }
    let digits = match digits.strip_prefix("81") {
        Some(rest) if s.trim_start().starts_with(['+', '＋']) => format!("0{rest}"),
        _ => digits,
    };
    (digits.starts_with('0') && (10..=11).contains(&digits.len())).then_some(digits)
}

/// Kana as a name is read: katakana, hiragana, the long vowel mark and spaces.
fn is_kana(s: &str) -> bool {
    !s.trim().is_empty()
        && s.chars()
            .all(|c| matches!(c, '\u{3041}'..='\u{3096}' | '\u{30A1}'..='\u{30FA}' | 'ー' | '・' | ' ' | '\u{3000}'))
}

/// Every problem of the form, in the order of the fields.
fn check(
    form: &ApplyForm,
    e: &Event,
    registration: bool,
    hosts: &[String],
    fields: &super::companions::Fields,
) -> Vec<String> {
    use super::companions::Ask;
    let mut problems = Vec::new();
    let ticket = form.ticket.parse::<i64>().ok().and_then(|id| e.tickets.iter().find(|t| t.id == id));
    if ticket.is_none() {
        problems.push("チケットを選択してください。".to_string());
    }
    let mut seen: Vec<String> = Vec::new();
    for (i, p) in form.people.iter().take(form.companions + 1).enumerate() {
        let who = if i == 0 { "代表者".to_string() } else { format!("同伴者{i}") };
        // The representative gives every field; a companion what 同伴者入力設定 asks.
        let ask = |name: &str| {
            if i == 0 { if name == "company" { Ask::Off } else { Ask::Required } } else { fields.get(name) }
        };
        // Everyone is named (the list of people, Zoom's registrant, the representative's mail).
        if p.name_kanji.is_empty() {
            problems.push(format!("{who}のお名前(漢字)を入力してください。"));
        } else if p.name_kanji.chars().count() > 64 {
            problems.push(format!("{who}のお名前(漢字)は64文字以内で入力してください。"));
        }
        if p.name_kana.is_empty() && ask("name_kana") == Ask::Required {
            problems.push(format!("{who}のお名前(カナ)を入力してください。"));
        } else if !p.name_kana.is_empty() && !is_kana(&p.name_kana) {
            problems.push(format!("{who}のお名前(カナ)は、カタカナかひらがなで入力してください。"));
        }
        let email_needed = ask("email") == Ask::Required || (i > 0 && registration);
        if p.email.is_empty() {
            if email_needed {
                let why = if i > 0 {
                    "（同伴者の方にも、その方専用の参加URLをお送りします）"
                } else {
                    ""
                };
                problems.push(format!("{who}のメールアドレスを入力してください。{why}"));
            }
        } else {
            match Email::parse(&p.email) {
                Err(_) => problems.push(format!(
                    "{who}のメールアドレス「{}」の形式が正しくありません。例: taro@example.com",
                    p.email
                )),
                Ok(email) => {
                    let lower = email.as_str().to_lowercase();
                    if registration && hosts.contains(&lower) {
                        problems.push(format!(
                            "{who}のメールアドレス「{}」は、このイベントの Zoom の主催者（ホスト）のものです。Zoom の仕様上、主催者のメールアドレスでは参加者として登録できません。別のメールアドレスを入力してください。",
                            p.email
                        ));
                    }
                    if registration && seen.contains(&lower) {
                        problems.push(format!(
                            "{who}のメールアドレス「{}」が、この申込の中で重複しています。Zoom の仕様上、お一人ずつ別のメールアドレスが必要です。",
                            p.email
                        ));
                    }
                    seen.push(lower);
                }
            }
        }
        if p.phone.is_empty() && ask("phone") == Ask::Required {
            problems.push(format!("{who}の電話番号を入力してください。"));
        } else if !p.phone.is_empty() && phone_digits(&p.phone).is_none() {
            problems.push(format!("{who}の電話番号「{}」の形式が正しくありません。例: 090-1234-5678", p.phone));
        }
        if p.company.is_empty() && ask("company") == Ask::Required {
            problems.push(format!("{who}の会社名を入力してください。"));
        } else if p.company.chars().count() > 100 {
            problems.push(format!("{who}の会社名は100文字以内で入力してください。"));
        }
    }
    problems
}

/// ［申し込む］.
pub async fn submit(
    State(app): State<SharedApp>,
    ctx: RequestContext,
    Path(key): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let l = load(&app, &key).await?;
    let (e, tz, registration, hosts) = (&l.event, l.tz.as_str(), l.registration, &l.hosts);
    let max = e.companions_max.clamp(0, 9) as usize;
    let form = ApplyForm::from_fields(&fields, max);
    let asked = fields.iter().find(|(k, _)| k == "companions").and_then(|(_, v)| v.trim().parse::<usize>().ok());
    let now = app.now();
    let refuse = |form: ApplyForm, problems: Vec<String>| -> Result<Response, AppError> {
        let p = page(&ctx, &l, form, problems, now);
        let csp = crate::payments::checkout_csp(&app.config);
        Ok((StatusCode::UNPROCESSABLE_ENTITY, [(axum::http::header::CONTENT_SECURITY_POLICY, csp)], Html(p.render()?))
            .into_response())
    };
    // A form sent again after it was stored goes to its application, whatever changed since.
    if !form.submit_key.is_empty() {
        let mut c = app.store.read().await?;
        if let Some(access) = apps::access_key_by_submit_key(&mut c, e.id, &form.submit_key).await? {
            return Ok(Redirect::to(&format!("/a/{access}")).into_response());
        }
    }
    if let Some(why) = super::public::closed_reason(e, now, tz) {
        return refuse(form, vec![why]);
    }
    if form.submit_key.len() < 16 {
        return refuse(form, vec!["お手数ですが、ページを読み込み直してからもう一度お申し込みください。".into()]);
    }
    let mut problems = check(&form, e, registration, hosts, &l.fields);
    if asked.is_some_and(|n| n > max) {
        problems.insert(0, format!("同伴者は {max} 人までお申し込みいただけます。"));
    }
    if !problems.is_empty() {
        return refuse(form, problems);
    }
    let ticket = e.tickets.iter().find(|t| t.id.to_string() == form.ticket).cloned().ok_or(AppError::NotFound)?;
    let people: Vec<NewPerson<'_>> = form
        .people
        .iter()
        .take(form.companions + 1)
        .map(|p| NewPerson {
            name_kanji: &p.name_kanji,
            name_kana: &p.name_kana,
            email: &p.email,
            phone: &p.phone,
            company: "",
        })
        .collect();
    // Paid online (Stripe Checkout) unless the event offers bank transfer only, or the
    // participant chose it.
    let online = !ticket_is_free(&ticket)
        && online_label(e).is_some()
        && (form.payment != "bank_transfer" || !e.payment_methods.iter().any(|m| m == "bank_transfer"));
    let access_key = random_token(24);
    let new = NewApplication {
        event_id: e.id,
        ticket_type_id: ticket.id,
        submit_key: &form.submit_key,
        access_key: &access_key,
        people: &people,
        unique_emails: registration,
        // Priced tickets are paid by bank transfer for now; a ¥0 ticket completes at once.
        status: "awaiting_payment",
    };
    let mut tx = app.store.begin().await?;
    let applied = store::apply(&mut tx, &new, now).await?;
    let problem = match applied {
        Applied::Created { id, free } => {
            if free {
                super::register::complete(&mut tx, &app, id).await?;
            } else if online {
                apps::set_payment_method(&mut tx, id, "stripe").await?;
                let amount = ticket.price_yen * people.len() as i64;
                tsunagu_store::stripe::create_order(&mut tx, id, e.account_id, amount, now).await?;
            } else {
                apps::set_payment_method(&mut tx, id, "bank_transfer").await?;
                super::register::queue_received(&mut tx, &app, id).await?;
            }
            tx.commit().await.map_err(StoreError::from)?;
            crate::jobs::wake(&app);
            tracing::info!(
                event_id = e.id,
                application_id = id,
                people = people.len(),
                free,
                online,
                "application made"
            );
            if online {
                // Straight to Stripe's page; if Stripe does not answer, the application page
                // offers ［お支払いに進む］ (the seats stay held meanwhile).
                return match crate::payments::checkout::start(&app, id, &access_key).await? {
                    Ok(url) => Ok(Redirect::to(&url).into_response()),
                    Err(_) => Ok(Redirect::to(&format!("/a/{access_key}")).into_response()),
                };
            }
            return Ok(Redirect::to(&format!("/a/{access_key}")).into_response());
        }
        Applied::Again { id } => {
            tx.rollback().await.map_err(StoreError::from)?;
            let mut c = app.store.read().await?;
            let access = apps::access_key_of(&mut c, id).await?.ok_or(AppError::NotFound)?;
            return Ok(Redirect::to(&format!("/a/{access}")).into_response());
        }
        Applied::Full { seats_left: 0 } => "満席になったため、お申し込みいただけませんでした。".to_string(),
        Applied::Full { seats_left } => {
            format!("残りの席は {} 席です。同伴者の人数を減らしてお申し込みください。", group(seats_left))
        }
        Applied::TicketFull { left: 0 } => {
            format!("「{}」は売り切れました。別のチケットを選択してください。", ticket.name)
        }
        Applied::TicketFull { left } => {
            format!(
                "「{}」の残りは {} 枚です。同伴者の人数を減らすか、別のチケットを選択してください。",
                ticket.name,
                group(left)
            )
        }
        Applied::EmailTaken { email } => format!(
            "メールアドレス「{email}」は、すでにこのイベントに申し込まれています。Zoom の仕様上、同じメールアドレスで複数回お申し込みいただくことはできません。"
        ),
        Applied::NoSuchEvent | Applied::NoSuchTicket => "チケットを選択してください。".to_string(),
    };
    tx.rollback().await.map_err(StoreError::from)?;
    refuse(form, vec![problem])
}

fn ticket_is_free(t: &tsunagu_store::events::Ticket) -> bool {
    t.price_yen == 0
}

struct PersonLine {
    role: String,
    name: String,
    email: String,
    cancelled: bool,
}

#[derive(Template)]
#[template(path = "application.html")]
struct ApplicationPage {
    chrome: Chrome,
    event_title: String,
    event_key: String,
    when: String,
    ticket: String,
    amount: String,
    status: &'static str,
    status_code: String,
    people: Vec<PersonLine>,
    access: String,
    can_cancel: bool,
    cancel_until: String,
    payment_note: String,
    /// Paid through Stripe: the order's state (`open`, `konbini`, `paid`, `expired`).
    online: bool,
    order_state: String,
    konbini_deadline: String,
    voucher_url: String,
    /// Back from Stripe and the payment not known yet: 決済を確認しています, refreshed.
    confirming: bool,
    /// A receipt can be printed (paid, online or by a confirmed transfer).
    receipt: bool,
    /// Paid and not cancelled (online, or a confirmed bank transfer): a refund is the organizer's
    /// decision, so the page offers no button and says whom to ask.
    paid_online: bool,
    /// The organizer's email and phone from their 特定商取引法に基づく表記.
    contact: String,
    /// That notice is complete (its public page exists).
    legal: bool,
    /// Cancelled after paying: what is refunded and what is kept.
    money: String,
    /// More than one person: companions get their own mails.
    companions: bool,
}

#[derive(Deserialize)]
pub struct MineQuery {
    #[serde(default)]
    confirming: Option<String>,
}

/// What a status is called, for the participant and the organizer.
pub fn status_label(status: &str) -> &'static str {
    match status {
        "applied" => "申込済",
        "awaiting_payment" => "入金待ち",
        "completed" => "申込完了",
        "cancelled" => "キャンセル",
        _ => "不明",
    }
}

/// The participant's page of their application.
pub async fn mine(
    State(app): State<SharedApp>,
    ctx: RequestContext,
    Path(access): Path<String>,
    Query(q): Query<MineQuery>,
) -> Result<Response, AppError> {
    let (a, e, tz, order) = {
        let mut c = app.store.read().await?;
        let a = apps::by_access_key(&mut c, &access).await?.ok_or(AppError::NotFound)?;
        let e = store::get_for_job(&mut c, a.event_id).await?.ok_or(AppError::NotFound)?;
        let tz = tsunagu_store::accounts::get(&mut c, e.account_id)
            .await?
            .map(|a| a.time_zone)
            .unwrap_or_else(|| "Asia/Tokyo".into());
        let order = tsunagu_store::stripe::order(&mut c, a.id).await?;
        (a, e, tz, order)
    };
    let deadline = e.cancel_until.unwrap_or(e.apply_until);
    // Paid (online, or a bank transfer the organizer confirmed): cancelling is the organizer's.
    let paid_online = a.status == "completed" && a.amount_yen > 0;
    let notice = if paid_online { crate::payments::legal::load(&app, e.account_id).await? } else { None };
    let contact = notice
        .as_ref()
        .map(|n| [n.get("email"), n.get("phone")].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" / "))
        .unwrap_or_default();
    let legal = notice.as_ref().is_some_and(|n| n.complete());
    let money = match &order {
        Some(o) if a.status == "cancelled" && o.state != "expired" => {
            let mut c = app.store.read().await?;
            let refunds = tsunagu_store::stripe::refunds_of(&mut c, a.id).await?;
            super::cancel::money_note(o, &refunds, &tz)
        }
        _ => String::new(),
    };
    let page = ApplicationPage {
        legal,
        paid_online,
        contact,
        money,
        companions: a.people.len() > 1,
        online: order.is_some(),
        order_state: order.as_ref().map(|o| o.state.clone()).unwrap_or_default(),
        konbini_deadline: order
            .as_ref()
            .and_then(|o| o.konbini_expires_at)
            .map(|t| crate::clock::format_local(t, &tz))
            .unwrap_or_default(),
        voucher_url: order.as_ref().and_then(|o| o.konbini_voucher_url.clone()).unwrap_or_default(),
        confirming: q.confirming.is_some() && order.as_ref().is_some_and(|o| o.state == "open"),
        receipt: a.amount_yen > 0
            && match &order {
                Some(o) => o.state == "paid" && o.refunded_yen < o.amount_yen,
                None => a.status == "completed",
            },
        access: access.clone(),
        payment_note: e.payment_note.clone(),
        can_cancel: app.now() < deadline,
        cancel_until: crate::clock::format_local(deadline, &tz),
        chrome: Chrome::public(&ctx, "お申し込み内容"),
        event_title: e.title.clone(),
        event_key: e.public_key.clone(),
        when: super::form::span(e.starts_at, e.ends_at, &tz),
        ticket: a.ticket_name.clone(),
        amount: if a.amount_yen == 0 { "無料".into() } else { format!("{}円", group(a.amount_yen)) },
        status: status_label(&a.status),
        status_code: a.status.clone(),
        people: a
            .people
            .iter()
            .map(|p| PersonLine {
                role: if p.position == 0 { "代表者".into() } else { format!("同伴者{}", p.position) },
                name: p.name_kanji.clone(),
                email: p.email.clone(),
                cancelled: p.cancelled,
            })
            .collect(),
    };
    let csp = crate::payments::checkout_csp(&app.config);
    Ok(([(axum::http::header::CONTENT_SECURITY_POLICY, csp)], Html(page.render()?)).into_response())
}
