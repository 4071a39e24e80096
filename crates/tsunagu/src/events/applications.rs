//! The organizer's side of applications on the event page: each application with its people,
//! status and Zoom registration state, a search by name or email, ［入金を確認］ (the bank
//! transfer that completes an application) and ［再試行］ for a failed registration.

use axum::extract::{Path, State};
use axum::response::Response;
use tsunagu_store::StoreError;
use tsunagu_store::applications as apps;

use crate::app::SharedApp;
use crate::clock::format_local;
use crate::web::context::flash_redirect;
use crate::web::error::AppError;
use crate::web::session::Auth;

pub struct PersonRow {
    pub id: i64,
    pub role: String,
    pub name: String,
    pub name_kana: String,
    pub email: String,
    pub phone: String,
    pub cancelled: bool,
    /// 登録待ち / 登録済み / 失敗, or empty when Zoom registration does not apply.
    pub zoom_label: &'static str,
    pub zoom_code: &'static str,
    pub zoom_reason: String,
    pub mailed: bool,
}

pub struct ApplicationRow {
    pub id: i64,
    pub applied_at: String,
    pub ticket: String,
    pub amount: String,
    pub status: &'static str,
    pub status_code: String,
    /// ［入金を確認］ applies: a bank transfer awaited.
    pub awaiting_payment: bool,
    /// Paid (or to be paid) through Stripe: how, its state, what was refunded, Stripe's ids.
    pub online: Option<OnlinePayment>,
    /// A paid online order: its cancellation forms ask for a キャンセル料.
    pub refundable: bool,
    /// A companion may be cancelled alone (not while an online payment is still to be made:
    /// its amount is fixed for everyone).
    pub companions_cancellable: bool,
    pub people: Vec<PersonRow>,
}

pub struct OnlinePayment {
    pub method: String,
    /// 決済待ち / コンビニ支払待ち（期限 …） / 決済完了 / 返金済み / 期限切れ.
    pub state: String,
    pub state_code: String,
    pub refunds: Vec<String>,
    pub ids: String,
}

/// The event's Stripe orders and refunds, by application.
#[derive(Default)]
pub struct Payments {
    orders: std::collections::HashMap<i64, tsunagu_store::stripe::Order>,
    refunds: std::collections::HashMap<i64, Vec<tsunagu_store::stripe::RefundRow>>,
}

impl Payments {
    pub async fn load(c: &mut tsunagu_store::AnyConnection, event_id: i64) -> Result<Payments, StoreError> {
        let mut p = Payments::default();
        for o in tsunagu_store::stripe::orders_of_event(c, event_id).await? {
            p.orders.insert(o.application_id, o);
        }
        for r in tsunagu_store::stripe::refunds_of_event(c, event_id).await? {
            p.refunds.entry(r.application_id).or_default().push(r);
        }
        Ok(p)
    }
}

/// How a payment's state reads for the organizer (and in the CSV).
pub fn order_state_label(o: &tsunagu_store::stripe::Order, tz: &str) -> String {
    match o.state.as_str() {
        "open" => "決済待ち".into(),
        "konbini" => match o.konbini_expires_at {
            Some(t) => format!("コンビニ支払待ち（期限 {}）", format_local(t, tz)),
            None => "コンビニ支払待ち".into(),
        },
        "paid" if o.refunded_yen >= o.amount_yen => "返金済み".into(),
        "paid" if o.refunded_yen > 0 => format!("決済完了（{}円 返金）", super::form::group(o.refunded_yen)),
        "paid" => "決済完了".into(),
        "refunded" => "返金済み".into(),
        "expired" => "期限切れ".into(),
        other => other.to_string(),
    }
}

fn refund_line(r: &tsunagu_store::stripe::RefundRow) -> String {
    let amount = super::form::group(r.amount_yen);
    let fee = if r.fee_yen > 0 {
        format!("（キャンセル料 {}円）", super::form::group(r.fee_yen))
    } else {
        String::new()
    };
    let state = match r.state.as_str() {
        "queued" | "pending" => "返金処理中",
        "requires_action" => "返金手続き中（購入者の口座情報の入力待ち）",
        "succeeded" => "返金済み",
        "failed" => "返金失敗（Stripe ダッシュボードでご確認ください）",
        "canceled" => "返金取消",
        "kept" => return format!("返金なし（キャンセル料 {}円）", super::form::group(r.fee_yen)),
        _ => "返金",
    };
    format!("{state}: {amount}円{fee}")
}

fn zoom_label(state: &str) -> (&'static str, &'static str) {
    match state {
        "waiting" | "adding" => ("登録待ち", "pending"),
        "registered" => ("登録済み", "created"),
        "failed" => ("失敗", "failed"),
        _ => ("", "none"),
    }
}

pub fn rows(list: Vec<apps::Application>, payments: &Payments, tz: &str) -> Vec<ApplicationRow> {
    list.into_iter()
        .map(|a| ApplicationRow {
            online: payments.orders.get(&a.id).map(|o| OnlinePayment {
                method: match o.method.as_deref() {
                    Some("konbini") => "コンビニ".into(),
                    Some("card") => "カード".into(),
                    _ => "カード・コンビニ（Stripe）".into(),
                },
                state: match (a.status.as_str(), o.state.as_str()) {
                    // Cancelled after paying: what became of the money (details in the refund lines).
                    ("cancelled", "paid") => {
                        let rows = payments.refunds.get(&a.id).map(Vec::as_slice).unwrap_or_default();
                        if rows.iter().any(|r| matches!(r.state.as_str(), "queued" | "pending" | "requires_action")) {
                            "返金手続き中".into()
                        } else if o.refunded_yen > 0 || rows.iter().any(|r| r.state == "succeeded") {
                            let kept: i64 = rows
                                .iter()
                                .filter(|r| !matches!(r.state.as_str(), "failed" | "canceled"))
                                .map(|r| r.fee_yen)
                                .sum::<i64>()
                                .min(o.amount_yen - o.refunded_yen);
                            if kept > 0 {
                                format!("返金済み（キャンセル料 {}円）", super::form::group(kept))
                            } else {
                                "返金済み".into()
                            }
                        } else if rows.iter().any(|r| r.state == "failed") {
                            "返金失敗".into()
                        } else {
                            "返金なし".into()
                        }
                    }
                    // Cancelled before paying: nothing is owed (a voucher paid later is refunded).
                    ("cancelled", "open" | "konbini") => "キャンセル（未払い）".into(),
                    _ => order_state_label(o, tz),
                },
                state_code: o.state.clone(),
                refunds: payments.refunds.get(&a.id).map(|rs| rs.iter().map(refund_line).collect()).unwrap_or_default(),
                ids: [o.session_id.as_deref(), o.payment_intent.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" / "),
            }),
            companions_cancellable: !payments
                .orders
                .get(&a.id)
                .is_some_and(|o| o.state == "open" || o.state == "konbini"),
            refundable: a.status != "cancelled"
                && payments.orders.get(&a.id).is_some_and(|o| {
                    o.state == "paid"
                        && crate::payments::refund::left(
                            o,
                            payments.refunds.get(&a.id).map(Vec::as_slice).unwrap_or_default(),
                        ) > 0
                }),
            id: a.id,
            applied_at: format_local(a.created_at, tz),
            ticket: a.ticket_name.clone(),
            amount: if a.amount_yen == 0 {
                "無料".into()
            } else {
                format!("{}円", super::form::group(a.amount_yen))
            },
            status: super::apply::status_label(&a.status),
            awaiting_payment: a.status == "awaiting_payment" && a.payment_method != "stripe",
            status_code: a.status,
            people: a
                .people
                .into_iter()
                .map(|p| {
                    let (zoom_label, zoom_code) = zoom_label(&p.zoom_state);
                    PersonRow {
                        id: p.id,
                        role: if p.position == 0 { "代表者".into() } else { format!("同伴者{}", p.position) },
                        name: p.name_kanji,
                        name_kana: p.name_kana,
                        email: p.email,
                        phone: p.phone,
                        cancelled: p.cancelled,
                        zoom_label,
                        zoom_code,
                        zoom_reason: p.zoom_reason,
                        mailed: p.mailed_at.is_some(),
                    }
                })
                .collect(),
        })
        .collect()
}

/// ［入金を確認］: the bank transfer arrived, so the application completes (the one transition
/// every way of paying uses), and each person's registration and mail is queued with it.
pub async fn confirm_payment(
    State(app): State<SharedApp>,
    auth: Auth,
    Path((id, application)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    {
        let mut c = app.store.read().await?;
        match apps::owned(&mut c, auth.account.id, application).await? {
            Some((event, _)) if event == id => {}
            _ => return Err(AppError::NotFound),
        }
    }
    let mut tx = app.store.begin().await?;
    let people = apps::complete(&mut tx, application, app.now()).await?;
    let back = format!("/events/{id}#application-{application}");
    let Some(people) = people else {
        tx.rollback().await.map_err(StoreError::from)?;
        return Ok(flash_redirect(
            &app,
            &back,
            "info",
            "この申込は入金待ちではありません（すでに完了しているか、キャンセルされています）。",
        ));
    };
    super::register::queue(&mut tx, &app, &people).await?;
    tx.commit().await.map_err(StoreError::from)?;
    crate::jobs::wake(&app);
    tracing::info!(account_id = %auth.account.id, event_id = id, application_id = application, "payment confirmed");
    Ok(flash_redirect(&app, &back, "success", "入金を確認しました。申込完了となり、参加URLのお知らせを送ります。"))
}

/// ［再試行］ for one person whose registration failed.
pub async fn retry(
    State(app): State<SharedApp>,
    auth: Auth,
    Path((id, person)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let mut tx = app.store.begin().await?;
    if !apps::retry_person(&mut tx, auth.account.id, person).await? {
        tx.rollback().await.map_err(StoreError::from)?;
        return Ok(flash_redirect(&app, &format!("/events/{id}"), "info", "再試行する登録はありません。"));
    }
    super::register::queue(&mut tx, &app, &[person]).await?;
    tx.commit().await.map_err(StoreError::from)?;
    crate::jobs::wake(&app);
    Ok(flash_redirect(&app, &format!("/events/{id}"), "success", "Zoom への登録をもう一度行います。"))
}

/// One CSV field: quoted when it holds a separator, a quote or a line break; a value Excel
/// would run as a formula (`=`, `+`, `-`, `@`, tab, CR at the start) gets a leading `'`.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

/// The event's applications as CSV (UTF-8 with a BOM, so that Excel opens it as-is), one line
/// per person; the search box's query applies.
pub async fn csv(
    State(app): State<SharedApp>,
    auth: Auth,
    Path(id): Path<i64>,
    axum::extract::Query(search): axum::extract::Query<super::console::Search>,
) -> Result<Response, AppError> {
    use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
    use axum::response::IntoResponse;
    let (event, list, payments) = {
        let mut c = app.store.read().await?;
        let event = tsunagu_store::events::get(&mut c, auth.account.id, id).await?.ok_or(AppError::NotFound)?;
        let list = apps::for_event(&mut c, auth.account.id, id, search.q()).await?;
        (event, list, Payments::load(&mut c, id).await?)
    };
    let tz = &auth.account.time_zone;
    let mut out = String::from("\u{feff}");
    out.push_str("申込ID,申込日時,申込状態,チケット,金額（円）,支払方法,決済状態,返金額（円）,Stripe,区分,お名前(漢字),お名前(カナ),メールアドレス,電話番号,Zoom登録,参加URL,キャンセル\r\n");
    for a in list.iter().rev() {
        let order = payments.orders.get(&a.id);
        let method = match (a.payment_method.as_str(), order.and_then(|o| o.method.as_deref())) {
            (_, Some("card")) => "カード",
            (_, Some("konbini")) => "コンビニ",
            ("stripe", _) => "カード・コンビニ（未決済）",
            ("bank_transfer", _) => "銀行振込",
            _ => "",
        };
        for p in &a.people {
            let (zoom, _) = zoom_label(&p.zoom_state);
            let fields = [
                a.id.to_string(),
                format_local(a.created_at, tz),
                super::apply::status_label(&a.status).to_string(),
                a.ticket_name.clone(),
                a.amount_yen.to_string(),
                method.to_string(),
                order.map(|o| order_state_label(o, tz)).unwrap_or_default(),
                order.map(|o| o.refunded_yen.to_string()).unwrap_or_default(),
                order
                    .map(|o| {
                        [o.session_id.as_deref(), o.payment_intent.as_deref()]
                            .into_iter()
                            .flatten()
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default(),
                if p.position == 0 { "代表者".into() } else { format!("同伴者{}", p.position) },
                p.name_kanji.clone(),
                p.name_kana.clone(),
                p.email.clone(),
                p.phone.clone(),
                zoom.to_string(),
                // A cancelled person's URL no longer lets them in (the registration is removed).
                if p.cancelled { String::new() } else { p.join_url.clone() },
                if p.cancelled { "キャンセル".into() } else { String::new() },
            ];
            out.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
            out.push_str("\r\n");
        }
    }
    let name = format!("applications-{}.csv", event.id);
    Ok((
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        out,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("山田 太郎"), "山田 太郎");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-1"), "'-1");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
    }
}
