//! The demo's sample course: LINE-linked on the demo instructor's official account (in the LINE
//! sandbox), published, with two lessons and its step messages: 「購読開始直後」 a text and an
//! image (通目 1 and 2), then 「時刻指定」 the next day at 09:00 and two days later at 20:00. Made
//! through the same store functions as the console; the image goes through the media pipeline.

use tsunagu_core::AccountId;
use tsunagu_store::courses::{self as store, NewStep};

use crate::app::App;

pub const TITLE: &str = "LINEで学ぶ はじめての講座（サンプル）";
/// The sample image (a gradient, 640×360 PNG).
const IMAGE: &[u8] = include_bytes!("../../assets/demo-welcome.png");

static DEMO: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// This process runs `tsunagu demo` (its demo-only buttons are shown).
pub fn is_demo() -> bool {
    DEMO.load(std::sync::atomic::Ordering::Relaxed)
}

/// The sample course's public key, creating it once for `account` with the demo's LINE
/// channels (`channel`: Messaging API id, bot name, basic id; `login`: id and secret).
pub async fn ensure(
    app: &App,
    account: AccountId,
    channel: (&str, &str, &str),
    login: (&str, &str),
) -> anyhow::Result<String> {
    DEMO.store(true, std::sync::atomic::Ordering::Relaxed);
    let existing = {
        let mut c = app.store.read().await?;
        store::courses_of(&mut c, account).await?.into_iter().find(|s| s.course.title == TITLE).map(|s| s.course)
    };
    if let Some(course) = existing {
        return Ok(course.public_key);
    }
    let now = app.now();
    // The image first: its conversion job runs while the rest is made.
    let image = match crate::media::library::accept(app, account, "ようこそ画像.png", IMAGE).await {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::warn!(error = %e, "demo sample image not added (is ffmpeg installed?)");
            None
        }
    };
    let key = crate::crypto::random_token(16);
    let mut tx = app.store.begin().await?;
    let id = store::create_course(&mut tx, account, &key, TITLE, "Asia/Tokyo", now).await?;
    store::update_course(
        &mut tx,
        account,
        id,
        TITLE,
        "公式LINEに届くメッセージで、毎日少しずつ学べる講座のサンプルです。\n受講を開始すると、講師の公式LINEと友だちになるご案内が表示されます。",
        "published",
        now,
    )
    .await?;
    store::add_lesson(&mut tx, id, "はじめに", "この講座の進め方を説明します。", None, now).await?;
    store::add_lesson(&mut tx, id, "第1回 基本の考え方", "毎朝届くメッセージに沿って進めましょう。", None, now).await?;
    let text = |body, timing, position| NewStep { kind: "text", body, media_id: None, timing, position, valid_from: 0 };
    store::add_step(
        &mut tx,
        id,
        &text("ご登録ありがとうございます！\nこの公式LINEから、講座のメッセージを順番にお届けします。", None, 1),
        now,
    )
    .await?;
    if let Some(media) = image {
        let step = NewStep { kind: "image", body: "", media_id: Some(media), timing: None, position: 2, valid_from: 0 };
        store::add_step(&mut tx, id, &step, now).await?;
    }
    store::add_step(
        &mut tx,
        id,
        &text("おはようございます。今日は第1回です。講座のページを開いてみましょう。", Some((1, 9 * 60)), 1),
        now,
    )
    .await?;
    store::add_step(
        &mut tx,
        id,
        &text("2日間お疲れさまでした。今夜は振り返りの時間です。", Some((2, 20 * 60)), 1),
        now,
    )
    .await?;
    // The Login channel (公式LINE連携) and the Messaging API channel (LINEステップ配信設定).
    let login_id = tsunagu_store::line::put_login_channel(&mut tx, account, None, login.0, &[id], now).await?;
    if login_id.is_none() {
        let links = tsunagu_store::line::login_channels(&mut tx, account).await?;
        if let Some(l) = links.iter().find(|l| l.channel_id == login.0) {
            let mut courses: Vec<i64> = l.courses.iter().map(|c| c.0).collect();
            courses.push(id);
            tsunagu_store::line::put_login_channel(&mut tx, account, Some(l.id), login.0, &courses, now).await?;
        }
    }
    let purpose = format!("{}:{}", crate::line::link::LOGIN_SECRET, login.0);
    let (key_id, sealed) = app.keys.seal(login.1, &crate::crypto::secret_aad(account, &purpose));
    tsunagu_store::secrets::put(&mut tx, account, &purpose, &key_id, &sealed, now).await?;
    store::set_channel(&mut tx, id, Some(channel.0), now).await?;
    let bot = tsunagu_store::line::BotProfile { name: channel.1.into(), picture_url: None, basic_id: channel.2.into() };
    tsunagu_store::line::set_bot_profile(&mut tx, account, channel.0, &bot, now).await?;
    tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
    crate::jobs::wake(app);
    Ok(key)
}
