//! The demo's sample event: a meeting with 参加者登録利用 on, one ¥0 and one priced ticket (paid by
//! card, konbini or bank transfer when Stripe is connected, else by bank transfer), and two
//! applications (one completed with a companion, one waiting for its bank transfer), so a
//! newcomer opens a filled 申込状況サマリー. Made through the same store functions and jobs as
//! the console and the public form.

use tsunagu_core::AccountId;
use tsunagu_store::applications as apps;
use tsunagu_store::events::{self as store, EventInput, EventState, NewApplication, NewPerson, NewTicket, ZoomChoice};

use crate::app::App;

pub const TITLE: &str = "Zoom 入門セミナー（サンプル）";

/// Create the sample once for `account`. When the account has it already (the demo restarted),
/// its Zoom settings are saved again: the sandbox starts empty on each run, so the meeting is
/// made anew (and the registered people are registered again in it).
pub async fn ensure(app: &App, account: AccountId, tz: &str, stripe: bool) -> anyhow::Result<()> {
    let existing = {
        let mut c = app.store.read().await?;
        store::summaries(&mut c, account).await?.into_iter().find(|s| s.event.title == TITLE).map(|s| s.event.id)
    };
    if let Some(id) = existing {
        return recreate_in_fresh_sandbox(app, account, id).await;
    }
    let now = app.now();
    let zone = jiff::tz::TimeZone::get(tz)?;
    // Two weeks ahead, 19:00–21:00 local.
    let day = jiff::Timestamp::from_millisecond(now)?
        .to_zoned(zone.clone())
        .date()
        .checked_add(jiff::Span::new().days(14))?;
    let start = day.at(19, 0, 0, 0).to_zoned(zone.clone())?.timestamp().as_millisecond();
    let end = day.at(21, 0, 0, 0).to_zoned(zone)?.timestamp().as_millisecond();
    let input = EventInput {
        title: TITLE,
        description: "Zoom の基本操作を 2 時間で学ぶオンラインセミナーです。\n初めての方も歓迎します。\n資料: https://example.com/zoom-basics",
        starts_at: start,
        ends_at: end,
        capacity: 30,
        apply_from: now,
        apply_until: start,
        cancel_until: None,
        payment_note: "銀行振込をお選びの方は、お申し込みから 7 日以内に次の口座へお振り込みください。\nつなぐ銀行 本店営業部 普通 1234567 ツナグセミナー",
        companions_max: 2,
        payment_methods: if stripe { "card,konbini,bank_transfer" } else { "bank_transfer" },
        konbini_days: 3,
        state: EventState::Published,
    };
    let tickets = [
        NewTicket { name: "一般（無料）", price_yen: 0, limit_count: None },
        NewTicket { name: "懇親会つき", price_yen: 3000, limit_count: Some(10) },
    ];
    let options = serde_json::to_string(&super::zoom::Options::default())?;
    let mut tx = app.store.begin().await?;
    let id = store::create(&mut tx, account, &crate::crypto::random_token(16), &input, &tickets, now).await?;
    let choice =
        ZoomChoice { enabled: true, kind: "meeting", starts_at: start, duration_minutes: 120, options: &options };
    store::save_zoom_settings(&mut tx, account, id, &choice, now).await?;
    super::zoom::queue_sync(&mut tx, app, id).await?;
    let event = store::get(&mut tx, account, id).await?.ok_or_else(|| anyhow::anyhow!("sample event vanished"))?;
    let free = [
        NewPerson {
            name_kanji: "山田 太郎",
            name_kana: "ヤマダ タロウ",
            email: "taro@example.com",
            phone: "090-1234-5678",
            company: "",
        },
        NewPerson {
            name_kanji: "山田 花子",
            name_kana: "ヤマダ ハナコ",
            email: "hanako@example.com",
            phone: "",
            company: "",
        },
    ];
    let paid = [NewPerson {
        name_kanji: "佐藤 次郎",
        name_kana: "サトウ ジロウ",
        email: "jiro@example.com",
        phone: "080-2345-6789",
        company: "",
    }];
    for (people, ticket, status) in
        [(&free[..], event.tickets[0].id, "awaiting_payment"), (&paid[..], event.tickets[1].id, "awaiting_payment")]
    {
        let new = NewApplication {
            event_id: id,
            ticket_type_id: ticket,
            submit_key: &crate::crypto::random_token(18),
            access_key: &crate::crypto::random_token(24),
            people,
            unique_emails: true,
            status,
        };
        if let store::Applied::Created { id: application, free } = store::apply(&mut tx, &new, now).await? {
            if free {
                super::register::complete(&mut tx, app, application).await?;
            } else {
                apps::set_payment_method(&mut tx, application, "bank_transfer").await?;
            }
        }
    }
    tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
    crate::jobs::wake(app);
    Ok(())
}

async fn recreate_in_fresh_sandbox(app: &App, account: AccountId, id: i64) -> anyhow::Result<()> {
    let Some(z) = ({
        let mut c = app.store.read().await?;
        store::zoom_settings(&mut c, account, id).await?
    }) else {
        return Ok(());
    };
    let now = app.now();
    let mut tx = app.store.begin().await?;
    store::record_zoom_held(&mut tx, id, None, now).await?;
    let choice = ZoomChoice {
        enabled: z.enabled,
        kind: &z.kind,
        starts_at: z.starts_at,
        duration_minutes: z.duration_minutes,
        options: &z.options,
    };
    store::save_zoom_settings(&mut tx, account, id, &choice, now).await?;
    super::zoom::queue_sync(&mut tx, app, id).await?;
    let people = apps::reregister_all(&mut tx, id).await?;
    super::register::queue(&mut tx, app, &people).await?;
    tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
    crate::jobs::wake(app);
    Ok(())
}
