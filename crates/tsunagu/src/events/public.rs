//! The public page of a published event (`/e/{public_key}` on `http.public_url`): what a
//! participant reads before applying. Drafts answer 404; a closed event says it no longer
//! takes applications.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Html;
use tsunagu_store::events::{self as store, Event, EventState};

use super::form::group;
use crate::app::SharedApp;
use crate::clock::format_local;
use crate::web::chrome::Chrome;
use crate::web::context::RequestContext;
use crate::web::error::AppError;

/// The public address of an event.
pub fn url(config: &crate::config::Config, e: &Event) -> String {
    format!("{}/e/{}", config.http.public_url.trim_end_matches('/'), e.public_key)
}

struct TicketLine {
    name: String,
    price: String,
    left: Option<String>,
}

#[derive(Template)]
#[template(path = "public_event.html")]
struct PublicEventPage {
    chrome: Chrome,
    key: String,
    title: String,
    when: String,
    apply_until: String,
    /// Why applications are not taken now, if they are not.
    closed: Option<String>,
    seats_left: i64,
    tickets: Vec<TicketLine>,
    description_html: String,
    /// The organizer's 特定商取引法に基づく表記 is filled in and the event sells tickets.
    legal: bool,
    /// How priced tickets are paid (カード・コンビニ・銀行振込); empty when every ticket is free.
    payment_methods: String,
}

/// What a participant is told about taking applications at `now`, or `None` while open.
pub(crate) fn closed_reason(e: &Event, now: i64, tz: &str) -> Option<String> {
    if e.state == EventState::Closed {
        Some("このイベントの申込受付は終了しました。".into())
    } else if now < e.apply_from {
        Some(format!("申込受付は {} からです。", format_local(e.apply_from, tz)))
    } else if now >= e.apply_until {
        Some("このイベントの申込受付期間は終了しました。".into())
    } else if e.seats_taken >= e.capacity {
        Some("満席のため、申込を受け付けていません。".into())
    } else {
        None
    }
}

pub async fn page(
    State(app): State<SharedApp>,
    ctx: RequestContext,
    Path(key): Path<String>,
) -> Result<Html<String>, AppError> {
    let (e, tz, legal) = {
        let mut c = app.store.read().await?;
        let e = store::public(&mut c, &key).await?.ok_or(AppError::NotFound)?;
        let tz = tsunagu_store::accounts::get(&mut c, e.account_id)
            .await?
            .map(|a| a.time_zone)
            .unwrap_or_else(|| "Asia/Tokyo".into());
        let legal = e.tickets.iter().any(|t| t.price_yen > 0)
            && crate::payments::legal::load_on(&mut c, e.account_id).await?.is_some_and(|n| n.complete());
        (e, tz, legal)
    };
    let sells = e.tickets.iter().any(|t| t.price_yen > 0);
    let payment_methods = [("card", "カード"), ("konbini", "コンビニ"), ("bank_transfer", "銀行振込")]
        .iter()
        .filter(|(code, _)| sells && e.payment_methods.iter().any(|m| m == code))
        .map(|(_, label)| *label)
        .collect::<Vec<_>>()
        .join("・");
    let page = PublicEventPage {
        payment_methods,
        legal,
        chrome: Chrome::public(&ctx, &e.title),
        when: super::form::span(e.starts_at, e.ends_at, &tz),
        apply_until: format_local(e.apply_until, &tz),
        closed: closed_reason(&e, app.now(), &tz),
        seats_left: (e.capacity - e.seats_taken).max(0),
        tickets: e
            .tickets
            .iter()
            .map(|t| TicketLine {
                name: t.name.clone(),
                price: if t.price_yen == 0 { "無料".into() } else { format!("{}円", group(t.price_yen)) },
                left: t.limit_count.map(|l| {
                    let left = (l - t.taken).max(0);
                    if left == 0 { "売り切れ".into() } else { format!("残り {} 枚", group(left)) }
                }),
            })
            .collect(),
        description_html: super::text::linkify(&e.description),
        key: e.public_key.clone(),
        title: e.title,
    };
    Ok(Html(page.render()?))
}
