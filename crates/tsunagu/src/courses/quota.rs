//! LINE's monthly limit (a 429 "monthly limit"): the refused request was not sent, so its steps
//! wait again; the channel's deliveries pause until the next month in Japan (when LINE's count
//! starts over), the instructor is told by mail and on the console, and a job resumes them
//! then. The instructor can resume earlier (after changing the LINE plan): what waited goes
//! out in order, once.

use tsunagu_store::courses as store;

use crate::app::App;
use crate::jobs::{JobError, Outcome};

/// The job that resumes a paused channel.
pub const RESUME: &str = "courses.resume_quota";

/// A test send is not sent again by the resumption: its reason says so.
const TEST_REASON: &str = "今月の送信数の上限に達したため送信できませんでした。テスト配信は自動では送り直しません。上限が戻ってから、もう一度「送信」してください。";
const REASON: &str = "今月の送信数の上限に達したため送信できませんでした。配信を一時停止し、再開後にこのメッセージから順にお届けします。";

/// The first instant of the month after `now` in Japan (LINE's monthly count is Japan's).
pub fn next_month_start(now: i64) -> i64 {
    let tz = jiff::tz::TimeZone::get("Asia/Tokyo").unwrap_or(jiff::tz::TimeZone::UTC);
    let today = jiff::Timestamp::from_millisecond(now).unwrap_or_default().to_zoned(tz.clone()).date();
    let first = today.first_of_month();
    let next = first.checked_add(jiff::Span::new().months(1)).unwrap_or(first);
    next.at(0, 0, 0, 0).to_zoned(tz).map(|z| z.timestamp().as_millisecond()).unwrap_or(now + 86_400_000)
}

/// LINE refused request `send_id` on `channel_id` for the monthly limit: pause, tell, and plan
/// the resumption, in one transaction.
pub async fn pause(app: &App, channel_id: &str, send_id: i64) -> Result<(), JobError> {
    let now = app.now();
    let until = next_month_start(now);
    let mut tx = app.store.begin().await?;
    let newly = store::pause_for_quota(&mut tx, channel_id, send_id, REASON, TEST_REASON, until, now).await?;
    if newly {
        let owner = tsunagu_store::line::channel(&mut tx, channel_id).await?;
        if let Some(owner) = owner
            && let Some(account) = tsunagu_store::accounts::get(&mut tx, owner.account_id).await?
        {
            let bot = tsunagu_store::line::bot_profile(&mut tx, account.id, channel_id).await?.map(|b| b.name);
            let name = bot.filter(|n| !n.is_empty()).map(|n| format!("「{n}」")).unwrap_or_default();
            let when = crate::clock::format_local(until, &account.time_zone);
            let body = format!(
                "{} 様\n\n公式LINE{name}（チャネルID {channel_id}）は、今月のメッセージ送信数の上限に達しました。\
                 そのため、このチャネルのステップ配信を一時停止しています。\n\n\
                 ・{when} に自動で再開します。それまでに配信予定だったメッセージは、再開後に順番どおりお届けします。\
                 失われたり、二重に届いたりすることはありません。\n\
                 ・LINE Official Account Manager でプランを変更して上限を引き上げた場合は、コンソールのコースの\
                 「LINEステップ配信設定」で［配信を再開する］を押すと、すぐに再開できます。\n\n\
                 Tsunagu",
                account.display_name
            );
            crate::mail::enqueue(
                &mut tx,
                app,
                &crate::mail::OutgoingMail {
                    account_id: Some(account.id),
                    cause: &format!("line-quota:{channel_id}:{until}"),
                    to: &account.email,
                    subject: "【Tsunagu】公式LINEの今月の送信上限に達したため、ステップ配信を一時停止しました",
                    body: &body,
                    calendar: None,
                },
            )
            .await?;
        }
        let payload = serde_json::json!({ "channel_id": channel_id });
        let key = format!("{RESUME}:{channel_id}:{until}");
        crate::jobs::enqueue(&mut tx, app, RESUME, &payload, Some(&key), until - now).await?;
    }
    tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
    if newly {
        crate::jobs::wake(app);
        tracing::warn!(channel_id, until, "LINE monthly limit reached: deliveries paused");
    }
    Ok(())
}

/// Resume the channel's deliveries now (its quota allows again, or the instructor says so).
/// Returns how many subscriptions resumed.
pub async fn resume(app: &App, channel_id: &str) -> Result<u64, tsunagu_store::StoreError> {
    let mut tx = app.store.begin().await?;
    let n = store::resume_after_quota(&mut tx, channel_id, app.now()).await?;
    if n > 0 {
        super::dispatch::queue_in(&mut tx, app).await?;
    }
    tx.commit().await?;
    if n > 0 {
        crate::jobs::wake(app);
    }
    tracing::info!(channel_id, resumed = n, "LINE deliveries resumed");
    Ok(n)
}

/// The job: resume when the pause it was planned for has come (a pause resumed earlier by
/// the instructor, or set again for a later month, is left as it is).
pub async fn run(app: &App, job: &tsunagu_store::jobs::ClaimedJob) -> Result<Outcome, JobError> {
    let Some(channel_id) = job.payload["channel_id"].as_str() else {
        return Err(JobError::Permanent("payload without channel_id".into()));
    };
    let until = {
        let mut c = app.store.read().await?;
        store::quota_paused_until(&mut c, channel_id).await?
    };
    if until.is_some_and(|u| u <= app.now()) {
        resume(app, channel_id).await?;
    }
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_ends_when_the_month_begins_in_japan() {
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_millisecond();
        // 2026-12-31 15:30 UTC is already 2027-01-01 00:30 in Japan: the next month is February.
        assert_eq!(next_month_start(at("2026-12-31T15:30:00Z")), at("2027-01-31T15:00:00Z"));
        assert_eq!(next_month_start(at("2026-12-02T21:00:00Z")), at("2026-12-31T15:00:00Z"));
    }
}
