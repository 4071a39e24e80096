//! Cancellation, which the manual says must be done by hand in both Tsunagu and Zoom: the
//! organizer cancels an application or one companion of it from the event page, and the
//! participant cancels from their own page until the event's deadline. Either way the seats
//! return to 定員 in the same transaction, and one `events.unregister` job per person removes
//! their Zoom registration (deleted, not cancelled: a cancelled registrant is denied and Zoom
//! refuses the email again, NOTES §5.3) and sends the cancellation mail.

use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tsunagu_store::applications::{self as apps, Cancelled};
use tsunagu_store::events as store;
use tsunagu_store::jobs::ClaimedJob;
use tsunagu_store::{AnyConnection, StoreError};
use tsunagu_zoom::model::EventRef;
use tsunagu_zoom::{Retry, ZoomError};

use super::mails::{self, JoinContext};
use crate::app::{App, SharedApp};
use crate::jobs::{JobError, Outcome};
use crate::web::context::flash_redirect;
use crate::web::error::AppError;
use crate::web::session::Auth;

/// The job kind.
pub const UNREGISTER: &str = "events.unregister";

/// Queue the removal and mail of each cancelled person, on the caller's transaction.
pub async fn queue(c: &mut AnyConnection, app: &App, people: &[i64]) -> Result<(), StoreError> {
    for id in people {
        let payload = serde_json::json!({ "person_id": id });
        crate::jobs::enqueue(c, app, UNREGISTER, &payload, Some(&format!("{UNREGISTER}:{id}")), 0).await?;
    }
    Ok(())
}

/// A refund to queue with the cancellation: (account, amount, キャンセル料).
type RefundPlan = Option<(tsunagu_core::AccountId, i64, i64)>;

/// Who cancels, and so what may happen to the money.
#[derive(Clone, Copy)]
enum Who<'a> {
    /// The organizer, with the キャンセル料 they typed (refunding the rest of a paid order).
    Organizer { fee: &'a str },
    /// The participant: never for an application already paid (a refund is the organizer's
    /// decision, under their キャンセル・返金 terms).
    Participant,
}

/// Why a cancellation was not made.
enum Refused {
    /// Said to whoever pressed the button.
    Message(String),
    /// Already cancelled.
    Already,
}

/// Cancel the application (or one companion) and queue what follows: each person's Zoom removal
/// and mail, the refund of a paid order less the キャンセル料, and the closing of an unpaid
/// checkout. The order is locked first and the money decided inside the same transaction, so a
/// payment arriving, or a second cancellation, cannot slip between the decision and the
/// cancellation (the payment's fulfilment takes the same lock).
async fn cancel_and_queue(
    app: &App,
    application: i64,
    person: Option<i64>,
    who: Who<'_>,
) -> Result<Result<(Cancelled, RefundPlan), Refused>, AppError> {
    let account = {
        let mut c = app.store.read().await?;
        tsunagu_store::stripe::order(&mut c, application).await?.map(|o| o.account_id)
    };
    let mut tx = app.store.begin().await?;
    let order = match account {
        Some(account) => tsunagu_store::stripe::lock_order(&mut tx, account, application).await?,
        None => None,
    };
    let unpaid = order.as_ref().is_some_and(|o| o.state == "open" || o.state == "konbini");
    let paid = order.as_ref().is_some_and(|o| o.state == "paid");
    let refused = |tx, why| async move {
        let tx: tsunagu_store::Tx = tx;
        tx.rollback().await.map_err(StoreError::from)?;
        Ok::<_, AppError>(Err(why))
    };
    if unpaid && person.is_some() {
        // The checkout's amount is fixed for everyone it was made for.
        let a = apps::by_id(&mut tx, application).await?;
        if a.is_some_and(|a| {
            a.status != "cancelled" && a.people.iter().any(|p| Some(p.id) == person && p.position > 0 && !p.cancelled)
        }) {
            return refused(
                tx,
                Refused::Message(
                    "お支払い前のお申し込みでは、同伴者だけをキャンセルできません。お申し込み全体をキャンセルしてください。".into(),
                ),
            )
            .await;
        }
    }
    // What the participant paid is theirs to ask back from the organizer: a card or konbini
    // payment, or a bank transfer the organizer confirmed.
    let settled = paid || {
        let a = apps::by_id(&mut tx, application).await?;
        a.is_some_and(|a| a.status == "completed" && a.amount_yen > 0)
    };
    let plan = match who {
        Who::Participant if settled => {
            return refused(
                tx,
                Refused::Message("お支払い済みのお申し込みのキャンセルと返金は、主催者にお問い合わせください。".into()),
            )
            .await;
        }
        Who::Organizer { fee } if paid => {
            match crate::payments::refund::refundable(&mut tx, application, person).await? {
                None => {
                    let a = apps::by_id(&mut tx, application).await?;
                    let gone = a.is_none_or(|a| {
                        a.status == "cancelled"
                            || person.is_some_and(|p| a.people.iter().any(|x| x.id == p && x.cancelled))
                    });
                    if gone {
                        return refused(tx, Refused::Already).await;
                    }
                    None
                }
                Some(r) => match parse_fee(fee, r.amount) {
                    Ok(fee) => Some((r.account, r.amount - fee, fee)),
                    Err(msg) => return refused(tx, Refused::Message(msg)).await,
                },
            }
        }
        _ => None,
    };
    let r = apps::cancel(&mut tx, application, person, app.now()).await?;
    if let Cancelled::Done { people, whole } = &r {
        queue(&mut tx, app, people).await?;
        if let Some((account, amount, fee)) = plan.filter(|r| r.1 > 0 || r.2 > 0) {
            let refund = crate::payments::refund::queue(&mut tx, app, application, account, amount, fee).await?;
            if !*whole {
                // The companion's mail says nothing of money: the one who paid is told.
                let a = apps::by_id(&mut tx, application).await?;
                let name = a
                    .as_ref()
                    .and_then(|a| a.people.iter().find(|p| Some(p.id) == person))
                    .map(|p| p.name_kanji.clone())
                    .unwrap_or_default();
                let konbini = order.as_ref().and_then(|o| o.method.as_deref()) == Some("konbini");
                let news = RefundNews::Companion { name: &name, amount, fee };
                queue_refund_mail(&mut tx, app, application, &format!("event-refund:{refund}"), news, konbini)
                    .await
                    .map_err(|e| AppError::Internal(anyhow::anyhow!("refund mail: {e:?}")))?;
            }
        }
        if *whole && unpaid {
            crate::payments::refund::queue_expire(&mut tx, app, application).await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        crate::jobs::wake(app);
        Ok(Ok((r, plan)))
    } else {
        tx.rollback().await.map_err(StoreError::from)?;
        Ok(Err(Refused::Already))
    }
}

#[derive(Deserialize, Default)]
pub struct CancelForm {
    /// キャンセル料 kept from the refund (yen), for a paid application.
    #[serde(default)]
    fee: String,
}

/// The キャンセル料 typed, between 0 and what is left to refund (`left`), or the message saying
/// what to type.
fn parse_fee(fee: &str, left: i64) -> Result<i64, String> {
    let digits: String = fee
        .trim()
        .chars()
        .filter_map(|c| match c {
            '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32),
            ',' | '，' | '円' | '¥' | '￥' | ' ' => None,
            c => Some(c),
        })
        .collect();
    if digits.is_empty() {
        // Never a full refund by a field left blank: the organizer types 0 for that.
        return Err("キャンセル料を入力してください（キャンセル料がない場合は 0）。".into());
    }
    let fee = digits.parse::<i64>().unwrap_or(-1);
    if fee < 0 || fee > left {
        return Err(format!(
            "キャンセル料は 0〜{} 円の数字で入力してください（返金できる額は {} 円です）。",
            super::form::group(left),
            super::form::group(left)
        ));
    }
    Ok(fee)
}

fn refund_note(plan: &RefundPlan) -> String {
    match plan {
        Some((_, 0, fee)) => format!("返金はありません（キャンセル料 {} 円）。", super::form::group(*fee)),
        Some((_, amount, fee)) if *fee > 0 => format!(
            "Stripe で {} 円を返金します（キャンセル料 {} 円）。",
            super::form::group(*amount),
            super::form::group(*fee)
        ),
        Some((_, amount, _)) if *amount > 0 => format!("Stripe で {} 円を返金します。", super::form::group(*amount)),
        Some(_) => "キャンセル料が全額のため、返金はありません。".into(),
        None => String::new(),
    }
}

async fn owned_application(app: &App, auth: &Auth, event: i64, application: i64) -> Result<(), AppError> {
    let mut c = app.store.read().await?;
    match apps::owned(&mut c, auth.account.id, application).await? {
        Some((e, _)) if e == event => Ok(()),
        _ => Err(AppError::NotFound),
    }
}

/// The organizer cancels a whole application.
pub async fn application(
    State(app): State<SharedApp>,
    auth: Auth,
    Path((id, application)): Path<(i64, i64)>,
    Form(form): Form<CancelForm>,
) -> Result<Response, AppError> {
    owned_application(&app, &auth, id, application).await?;
    let back = format!("/events/{id}#application-{application}");
    let r = cancel_and_queue(&app, application, None, Who::Organizer { fee: &form.fee }).await?;
    tracing::info!(account_id = %auth.account.id, event_id = id, application_id = application, "application cancelled by the organizer");
    Ok(match r {
        // The message shows at the top of the page: no jump to the application, past it.
        Err(Refused::Message(msg)) => flash_redirect(&app, &format!("/events/{id}"), "error", &msg),
        Ok((Cancelled::Done { people, .. }, plan)) => flash_redirect(
            &app,
            &back,
            "success",
            &format!(
                "申込をキャンセルしました（{} 人）。席を戻し、Zoom の参加者登録を取り消して、キャンセルのお知らせを送ります。{}",
                people.len(),
                refund_note(&plan)
            ),
        ),
        _ => flash_redirect(&app, &back, "info", "この申込はすでにキャンセルされています。"),
    })
}

/// The organizer cancels one companion (the representative's row cancels the application).
pub async fn person(
    State(app): State<SharedApp>,
    auth: Auth,
    Path((id, application, person)): Path<(i64, i64, i64)>,
    Form(form): Form<CancelForm>,
) -> Result<Response, AppError> {
    owned_application(&app, &auth, id, application).await?;
    let back = format!("/events/{id}#application-{application}");
    let r = cancel_and_queue(&app, application, Some(person), Who::Organizer { fee: &form.fee }).await?;
    Ok(match r {
        // The message shows at the top of the page: no jump to the application, past it.
        Err(Refused::Message(msg)) => flash_redirect(&app, &format!("/events/{id}"), "error", &msg),
        Ok((Cancelled::Done { whole: false, .. }, plan)) => flash_redirect(
            &app,
            &back,
            "success",
            &format!(
                "同伴者をキャンセルしました。席を定員に戻し、キャンセルのお知らせを送ります（Zoom の参加者登録があれば取り消します）。{}",
                refund_note(&plan)
            ),
        ),
        Ok((Cancelled::Done { .. }, plan)) => flash_redirect(
            &app,
            &back,
            "success",
            &format!("代表者のキャンセルのため、申込全体をキャンセルしました。{}", refund_note(&plan)),
        ),
        _ => flash_redirect(&app, &back, "info", "すでにキャンセルされています。"),
    })
}

/// The participant cancels their application from its page, until the deadline.
pub async fn mine(State(app): State<SharedApp>, Path(access): Path<String>) -> Result<Response, AppError> {
    let (a, e) = {
        let mut c = app.store.read().await?;
        let a = apps::by_access_key(&mut c, &access).await?.ok_or(AppError::NotFound)?;
        let e = store::get_for_job(&mut c, a.event_id).await?.ok_or(AppError::NotFound)?;
        (a, e)
    };
    let page = format!("/a/{access}");
    if app.now() >= e.cancel_until.unwrap_or(e.apply_until) {
        return Ok(flash_redirect(
            &app,
            &page,
            "error",
            "キャンセルの受付期限を過ぎているため、このページからはキャンセルできません。主催者にお問い合わせください。",
        ));
    }
    match cancel_and_queue(&app, a.id, None, Who::Participant).await? {
        Ok((Cancelled::Done { .. }, _)) => {
            tracing::info!(event_id = e.id, application_id = a.id, "application cancelled by the participant");
            Ok(flash_redirect(
                &app,
                &page,
                "success",
                "お申し込みをキャンセルしました。キャンセルのお知らせをメールでお送りします。",
            ))
        }
        Err(Refused::Message(msg)) => Ok(flash_redirect(&app, &page, "error", &msg)),
        _ => Ok(Redirect::to(&page).into_response()),
    }
}

#[derive(Deserialize)]
struct Payload {
    person_id: i64,
}

/// How a refund reaches the buyer, by the way they paid.
fn refund_how(konbini: bool) -> &'static str {
    if konbini {
        "コンビニでお支払いいただいたため、返金先の口座をお伺いするメールが Stripe から届きます。そちらから口座情報をご入力ください。"
    } else {
        "お支払いに使われたカードに返金されます（反映の時期はカード会社によって異なります）。"
    }
}

/// What a refund mail tells the representative (who paid).
pub enum RefundNews<'a> {
    /// A payment arrived after the application was cancelled: all of it goes back.
    Late { amount: i64 },
    /// One companion was cancelled: their share less the キャンセル料.
    Companion { name: &'a str, amount: i64, fee: i64 },
}

/// Queue the 返金のお知らせ to the application's representative, on the caller's transaction.
/// `cause` names the mail (one per cause).
pub async fn queue_refund_mail(
    c: &mut AnyConnection,
    app: &App,
    application_id: i64,
    cause: &str,
    news: RefundNews<'_>,
    konbini: bool,
) -> Result<(), JobError> {
    use super::form::group;
    let Some(a) = apps::by_id(c, application_id).await? else { return Ok(()) };
    let Some(e) = store::get_for_job(c, a.event_id).await? else { return Ok(()) };
    let Some(account) = tsunagu_store::accounts::get(c, e.account_id).await? else { return Ok(()) };
    let Some(rep) = a.people.iter().find(|p| p.position == 0) else { return Ok(()) };
    let how = refund_how(konbini);
    let note = match news {
        RefundNews::Late { amount } => format!(
            "お申し込みのキャンセル後に、お支払い（{}円）を確認しました。お申し込みはキャンセル済みのため、全額を返金します。\n{how}",
            group(amount)
        ),
        RefundNews::Companion { name, amount: 0, fee } => {
            format!(
                "同伴者の {name} 様のキャンセルを承りました。{name} 様の分（{}円）はキャンセル料に充てるため、返金はありません。",
                group(fee)
            )
        }
        RefundNews::Companion { name, amount, fee } if fee > 0 => format!(
            "同伴者の {name} 様のキャンセルにより、{}円 を返金します（キャンセル料 {}円）。\n{how}",
            group(amount),
            group(fee)
        ),
        RefundNews::Companion { name, amount, .. } => {
            format!("同伴者の {name} 様のキャンセルにより、{}円 を返金します。\n{how}", group(amount))
        }
    };
    let ctx = JoinContext {
        name: rep.name_kanji.clone(),
        event_title: e.title.clone(),
        event_date: super::form::span(e.starts_at, e.ends_at, &account.time_zone),
        application_url: format!("{}/a/{}", app.config.http.public_url.trim_end_matches('/'), rep.access_key),
        payment_note: note,
        ..JoinContext::default()
    };
    let to = mails::Delivery { to: &rep.email, cause, calendar: None };
    mails::queue(c, app, &account, mails::REFUNDED, &ctx, to).await?;
    Ok(())
}

/// The cancellation mail's paragraph on the money of a Stripe order: a voucher that lapsed, or
/// what is refunded and what is kept as キャンセル料. Empty when nothing was paid or is due.
pub(crate) fn money_note(
    o: &tsunagu_store::stripe::Order,
    refunds: &[tsunagu_store::stripe::RefundRow],
    tz: &str,
) -> String {
    use super::form::group;
    match o.state.as_str() {
        // Cancelled with a voucher still open: it can still be paid at a store.
        "konbini" => "お申し込みはキャンセルされたため、コンビニでのお支払いはしないでください（お支払いになった場合は、全額を返金します）。".into(),
        "expired" => match o.konbini_expires_at {
            Some(t) => format!(
                "お支払い期限（{}）までにお支払いを確認できなかったため、お申し込みを取り消しました。",
                crate::clock::format_local(t, tz)
            ),
            None => "お支払いが完了しないまま期限を過ぎたため、お申し込みを取り消しました。".into(),
        },
        "paid" | "refunded" => {
            let live: Vec<_> = refunds.iter().filter(|r| !matches!(r.state.as_str(), "failed" | "canceled")).collect();
            let refunded: i64 = live.iter().map(|r| r.amount_yen).sum::<i64>().max(o.refunded_yen);
            // A キャンセル料 is what is kept of what was paid (a refund in full made later in
            // Stripe's dashboard leaves none).
            let fee: i64 = live.iter().map(|r| r.fee_yen).sum::<i64>().min(o.amount_yen - refunded).max(0);
            let fee_text = if fee > 0 { format!("（キャンセル料 {}円）", group(fee)) } else { String::new() };
            if refunded <= 0 && fee <= 0 {
                return "返金については、主催者からご連絡します。".into();
            }
            if refunded <= 0 {
                return format!(
                    "お支払いいただいた {}円 はキャンセル料に充てるため、返金はありません。",
                    group(o.amount_yen)
                );
            }
            let how = refund_how(o.method.as_deref() == Some("konbini"));
            if refunded >= o.amount_yen {
                return format!("お支払いいただいた全額（{}円）を返金します。\n{how}", group(o.amount_yen));
            }
            format!(
                "お支払いいただいた {}円 のうち {}円 を返金します{fee_text}。\n{how}",
                group(o.amount_yen),
                group(refunded)
            )
        }
        _ => String::new(),
    }
}

/// `events.unregister`: remove the person's Zoom registration, then send the cancellation mail.
/// The mail goes out even when Zoom refuses the removal for good (the event page then shows the
/// reason, for the organizer to remove it in Zoom).
pub async fn run(app: &App, job: &ClaimedJob) -> Result<Outcome, JobError> {
    let p: Payload = serde_json::from_value(job.payload.clone())
        .map_err(|e| JobError::Permanent(format!("events.unregister payload: {e}")))?;
    let (person, event, zoom, account, money) = {
        let mut c = app.store.read().await?;
        let Some(person) = apps::person_for_job(&mut c, p.person_id).await? else { return Ok(Outcome::Done) };
        let Some(event) = store::get_for_job(&mut c, person.event_id).await? else { return Ok(Outcome::Done) };
        let zoom = store::zoom_settings_for_job(&mut c, person.event_id).await?;
        let account = tsunagu_store::accounts::get(&mut c, event.account_id).await?;
        // What became of the money, told to the representative (who paid).
        let money = match tsunagu_store::stripe::order(&mut c, person.application_id).await? {
            Some(o) if person.position == 0 => {
                let refunds = tsunagu_store::stripe::refunds_of(&mut c, person.application_id).await?;
                let tz = account.as_ref().map(|a| a.time_zone.as_str()).unwrap_or("Asia/Tokyo");
                money_note(&o, &refunds, tz)
            }
            _ => String::new(),
        };
        (person, event, zoom, account, money)
    };
    let Some(account) = account else { return Ok(Outcome::Done) };
    if !person.cancelled {
        return Ok(Outcome::Done);
    }
    let registration = zoom.as_ref().is_some_and(|z| z.enabled && super::zoom::Options::parse(&z.options).registration);
    let may_be_at_zoom = registration && matches!(person.zoom_state.as_str(), "adding" | "registered" | "failed");
    if let Some(z) = zoom.as_ref().filter(|z| z.zoom_id.is_some() && may_be_at_zoom && !person.email.is_empty()) {
        let zoom_id = z.zoom_id.unwrap_or_default();
        let at = if z.zoom_kind == "webinar" { EventRef::Webinar(zoom_id) } else { EventRef::Meeting(zoom_id) };
        match remove(app, &event.account_id, at, &person).await {
            Ok(()) => {
                let mut c = app.store.conn().await?;
                apps::record_unregistered(&mut c, person.id, &person.zoom_registrant_id).await?;
            }
            Err(e) => {
                let last = job.attempts >= job.max_attempts;
                match e.retry() {
                    Retry::NotBefore { retry_after } => {
                        return Err(JobError::WaitUntil {
                            at_ms: super::zoom::reset_time(retry_after.as_deref(), app.now()),
                            reason: e.to_string(),
                        });
                    }
                    Retry::No => {}
                    _ if last => {}
                    _ => return Err(JobError::Retry(e.to_string())),
                }
                let mut c = app.store.conn().await?;
                let reason = format!(
                    "Zoom の参加者登録を取り消せませんでした。Zoom の管理画面でこの方の登録を削除してください。（{}）",
                    e.message_ja()
                );
                apps::record_zoom_problem(&mut c, person.id, &reason, false).await?;
                tracing::warn!(person_id = person.id, error = %e, "could not remove the zoom registration");
            }
        }
    }
    let ctx = JoinContext {
        name: person.name_kanji.clone(),
        event_title: event.title.clone(),
        event_date: super::form::span(event.starts_at, event.ends_at, &account.time_zone),
        join_url: person.join_url.clone(),
        // Only someone who was sent their own URL is told it no longer works.
        personal: registration && person.mailed_at.is_some(),
        payment_note: money,
        ..JoinContext::default()
    };
    let mut tx = app.store.begin().await?;
    let cause = format!("event-cancel:{}", person.id);
    let to = mails::Delivery { to: &person.email, cause: &cause, calendar: None };
    mails::queue(&mut tx, app, &account, mails::CANCELLED, &ctx, to).await?;
    tx.commit().await.map_err(StoreError::from)?;
    crate::jobs::wake(app);
    Ok(Outcome::Done)
}

/// Delete the person's registrant at Zoom: by the id recorded, or found by email when an add
/// may have gone through unrecorded. Already gone counts as done.
async fn remove(
    app: &App,
    account: &tsunagu_core::AccountId,
    at: EventRef,
    person: &apps::Person,
) -> Result<(), ZoomError> {
    let Some(org) = crate::zoom::organizer(app, *account)
        .await
        .map_err(|e| ZoomError::LimitsUnavailable { detail: format!("{e:#}") })?
    else {
        return Err(ZoomError::BadCredentials);
    };
    let id = if person.zoom_registrant_id.is_empty() {
        match app.zoom.find_registrant(&org, at, &person.email).await {
            Ok(Some(r)) => r.id,
            Ok(None) | Err(ZoomError::EventGone) => return Ok(()),
            Err(e) => return Err(e),
        }
    } else {
        person.zoom_registrant_id.clone()
    };
    match app.zoom.delete_registrant(&org, at, &id).await {
        Ok(()) | Err(ZoomError::EventGone) => Ok(()),
        Err(ZoomError::Other { status: 404, .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
