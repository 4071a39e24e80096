//! 領収書: a printable receipt for each paid application (`/a/{access}/receipt`), on the
//! participant's own page. The buyer sets the name it is addressed to (宛名). It shows 但し書き,
//! the amount received (less what was refunded) with the 10 % consumption tax shown as included
//! in the participation fee (a キャンセル料 kept is shown on its own line and left out of the tax
//! shown, which the receipt says: a キャンセル料 that compensates a cancellation is outside
//! consumption tax in Japan, while a handling fee would not be, and Tsunagu does not know which),
//! the date of payment, and the organizer's name and address from their 特定商取引法に基づく表記,
//! with their 適格請求書発行事業者登録番号 when they gave one.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Html;
use serde::Deserialize;
use tsunagu_store::applications as apps;

use crate::app::SharedApp;
use crate::web::chrome::Chrome;
use crate::web::context::RequestContext;
use crate::web::error::AppError;

#[derive(Deserialize)]
pub struct ReceiptQuery {
    #[serde(default)]
    atena: String,
}

#[derive(Template)]
#[template(path = "receipt.html")]
struct ReceiptPage {
    chrome: Chrome,
    access: String,
    number: String,
    issued: String,
    atena: String,
    amount: String,
    tax: String,
    proviso: String,
    seller: String,
    address: String,
    phone: String,
    invoice_number: String,
    paid: bool,
    refunded: String,
    /// The キャンセル料 kept, when there is one (its own line, no tax).
    fee: String,
    /// Paid, then refunded in full: nothing to receipt.
    all_refunded: bool,
}

/// The consumption tax included in a tax-inclusive amount at 10 % (rounded down).
pub fn tax_included(amount: i64) -> i64 {
    amount * 10 / 110
}

pub async fn show(
    State(app): State<SharedApp>,
    ctx: RequestContext,
    Path(access): Path<String>,
    Query(q): Query<ReceiptQuery>,
) -> Result<Html<String>, AppError> {
    let (a, e, order, notice, account, completed) = {
        let mut c = app.store.read().await?;
        let a = apps::by_access_key(&mut c, &access).await?.ok_or(AppError::NotFound)?;
        let e = tsunagu_store::events::get_for_job(&mut c, a.event_id).await?.ok_or(AppError::NotFound)?;
        let order = tsunagu_store::stripe::order(&mut c, a.id).await?;
        let notice = super::legal::load_on(&mut c, e.account_id).await?;
        let account = tsunagu_store::accounts::get(&mut c, e.account_id).await?.ok_or(AppError::NotFound)?;
        let completed = apps::completed_at(&mut c, a.id).await?;
        (a, e, order, notice, account, completed)
    };
    let (received, refunded, fee) = match &order {
        Some(o) if o.state == "paid" || o.state == "refunded" => {
            let mut c = app.store.read().await?;
            let refunds = tsunagu_store::stripe::refunds_of(&mut c, a.id).await?;
            let kept: i64 =
                refunds.iter().filter(|r| !matches!(r.state.as_str(), "failed" | "canceled")).map(|r| r.fee_yen).sum();
            let received = o.amount_yen - o.refunded_yen;
            (received, o.refunded_yen, kept.min(received))
        }
        Some(_) => (0, 0, 0),
        None if a.status == "completed" => (a.amount_yen, 0, 0),
        None => (0, 0, 0),
    };
    let paid = received > 0 && completed.is_some();
    // What was received for the seats still taken, on which the tax is shown.
    let fare = received - fee;
    let coming = a.people.iter().filter(|p| !p.cancelled).count();
    let notice = notice.unwrap_or_default();
    let seller =
        Some(notice.get("seller").to_string()).filter(|s| !s.is_empty()).unwrap_or(account.display_name.clone());
    let atena: String = q.atena.trim().chars().take(60).collect();
    let group = crate::events::form::group;
    let page = ReceiptPage {
        chrome: Chrome::public(&ctx, "領収書"),
        access: access.clone(),
        number: format!("{}-{}", e.id, a.id),
        issued: completed.map(|t| crate::clock::format_local(t, &account.time_zone)).unwrap_or_default(),
        atena,
        amount: group(received),
        tax: group(tax_included(fare)),
        proviso: match (fare > 0 && coming > 0, fee > 0) {
            (true, true) => {
                format!("「{}」参加費（{}・{}名分）およびキャンセル料として", e.title, a.ticket_name, coming)
            }
            (true, false) => format!("「{}」参加費として（{}・{}名分）", e.title, a.ticket_name, coming),
            _ => format!("「{}」のキャンセル料として", e.title),
        },
        seller,
        address: notice.get("address").to_string(),
        phone: notice.get("phone").to_string(),
        invoice_number: notice.invoice_number.clone(),
        paid,
        refunded: if refunded > 0 { group(refunded) } else { String::new() },
        fee: if fee > 0 { group(fee) } else { String::new() },
        all_refunded: received <= 0 && refunded > 0,
    };
    Ok(Html(page.render()?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn tax_is_shown_as_included() {
        assert_eq!(super::tax_included(3000), 272);
        assert_eq!(super::tax_included(11000), 1000);
        assert_eq!(super::tax_included(0), 0);
    }
}
