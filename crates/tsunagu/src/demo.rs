//! `tsunagu demo`: everything embedded (SQLite in the data directory, mails kept in the
//! database), demo accounts created on first start and printed on every start.

use std::path::Path;

use tsunagu_core::{Email, Plan, Role};
use tsunagu_store::accounts;

use crate::accounts::SignupInput;
use crate::config::Config;
use crate::startup;

pub const DEMO_ORGANIZER: (&str, &str, &str) = ("demo@example.com", "tsunagu-demo", "デモ 主催者");
/// Present in a data directory whose database the demo created.
const DEMO_MARKER: &str = "DEMO";
pub const DEMO_ADMIN: (&str, &str, &str) = ("admin@example.com", "tsunagu-demo-admin", "デモ 管理者");

pub async fn run(mut config: Config, from_file: bool, listen: &str, data_dir: &Path) -> anyhow::Result<()> {
    // The demo owns its settings unless a config file or TSUNAGU_* variables say otherwise.
    let env_set = |k: &str| std::env::var(k).is_ok();
    if !from_file && !env_set("TSUNAGU_DATA__DIR") {
        config.data.dir = data_dir.to_path_buf();
    }
    if !from_file && !env_set("TSUNAGU_DATABASE__URL") {
        config.database.url = format!("sqlite://{}", config.data.dir.join("tsunagu.db").display());
    }
    if !env_set("TSUNAGU_HTTP__LISTEN") {
        if listen.parse::<std::net::SocketAddr>().is_err() {
            anyhow::bail!(
                "--listen にはアドレスとポートを指定してください（例: 127.0.0.1:9090） / --listen takes an address and port such as 127.0.0.1:9090"
            );
        }
        config.http.listen = listen.to_string();
    }
    let base = format!("http://{}", config.http.listen);
    if !env_set("TSUNAGU_HTTP__PUBLIC_URL") {
        config.http.public_url = base.clone();
    }
    if !env_set("TSUNAGU_HTTP__MANAGER_URL") {
        config.http.manager_url = base.clone();
    }
    if !env_set("TSUNAGU_MAIL__SMTP_URL") {
        config.mail.smtp_url = crate::config::Secret::default();
    }
    // The built-in Zoom sandbox, unless Zoom's URLs are configured otherwise.
    let zoom_sandbox = if !from_file && !env_set("TSUNAGU_ZOOM__API_BASE_URL") {
        let sandbox = demo_zoom_sandbox(&config.http.manager_url);
        let (zoom_base, _task) = tsunagu_sandbox::serve(sandbox.router()).await?;
        sandbox.set_join_base(&zoom_base);
        config.zoom.api_base_url = format!("{zoom_base}/v2");
        config.zoom.oauth_base_url = zoom_base.clone();
        if !env_set("TSUNAGU_ZOOM__OAUTH_CLIENT_ID") {
            config.zoom.oauth_client_id = DEMO_ZOOM_OAUTH.0.into();
            config.zoom.oauth_client_secret = crate::config::Secret::new(DEMO_ZOOM_OAUTH.1);
        }
        Some(zoom_base)
    } else {
        None
    };
    // The built-in LINE sandbox (Messaging API, tokens, LINE Login), unless LINE's URLs are set.
    let line_sandbox = if !from_file && !env_set("TSUNAGU_LINE__API_BASE_URL") {
        let sandbox = demo_line_sandbox(&config.http.public_url);
        let (line_base, _task) = tsunagu_sandbox::serve(sandbox.router()).await?;
        config.line.api_base_url = line_base.clone();
        config.line.data_api_base_url = line_base.clone();
        config.line.access_base_url = line_base.clone();
        // The sandbox takes the demo's http:// media URLs (LINE itself would not).
        config.media.allow_http = true;
        Some(line_base)
    } else {
        None
    };
    // The built-in Stripe sandbox (hosted checkout, konbini vouchers, a dashboard), unless
    // Stripe's URL is set.
    let stripe_sandbox = if !from_file && !env_set("TSUNAGU_STRIPE__API_BASE_URL") {
        let sandbox = tsunagu_sandbox::stripe::StripeSandbox::new();
        sandbox.add_account(tsunagu_sandbox::stripe::SandboxAccount {
            id: DEMO_STRIPE.0.into(),
            display_name: "デモ主催者".into(),
            email: DEMO_ORGANIZER.0.into(),
            konbini: true,
        });
        sandbox.add_key(DEMO_STRIPE.0, DEMO_STRIPE.1);
        sandbox.set_recording(false);
        let (stripe_base, _task) = tsunagu_sandbox::serve(sandbox.router()).await?;
        sandbox.set_base(&stripe_base);
        config.stripe.api_base_url = stripe_base.clone();
        Some(stripe_base)
    } else {
        None
    };
    if tsunagu_store::Backend::from_url(&config.database.url)? != tsunagu_store::Backend::Sqlite {
        anyhow::bail!(
            "デモは専用の SQLite データベースで動きます。PostgreSQL では `tsunagu serve` を使ってください / the demo runs on its own SQLite database; use `tsunagu serve` for PostgreSQL"
        );
    }
    let app = startup::build_app(config, startup::system_clock()).await?;
    {
        // The demo's published passwords must never land in a real installation's database:
        // the demo only adopts a database that it created itself (marked in the data dir) or
        // an empty one.
        let marker = app.config.data.dir.join(DEMO_MARKER);
        let mut c = app.store.conn().await?;
        let accounts = accounts::count(&mut c).await?;
        if accounts > 0 && !marker.exists() {
            anyhow::bail!(
                "{} にはデモ以外のアカウントがあるため、デモを起動しません。別のフォルダを --data-dir で指定してください / {} holds accounts not created by the demo; refusing to add demo logins to it (use another --data-dir)",
                app.config.database.url,
                app.config.database.url
            );
        }
        std::fs::write(&marker, "This data directory belongs to `tsunagu demo`.\n")?;
    }
    for (email, password, name, plan, role) in [
        (DEMO_ORGANIZER.0, DEMO_ORGANIZER.1, DEMO_ORGANIZER.2, Plan::Business, Role::Member),
        (DEMO_ADMIN.0, DEMO_ADMIN.1, DEMO_ADMIN.2, Plan::Special, Role::Admin),
    ] {
        let exists = {
            let mut c = app.store.conn().await?;
            accounts::credentials_by_email(&mut c, &Email::parse(email)?).await?.is_some()
        };
        if !exists {
            let input = SignupInput { email, name, password, password_confirm: password, plan, role };
            crate::accounts::sign_up(&app, &input).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    if stripe_sandbox.is_some() {
        connect_demo_organizer_to_stripe(&app).await?;
    }
    let organizer = {
        let mut c = app.store.read().await?;
        accounts::credentials_by_email(&mut c, &Email::parse(DEMO_ORGANIZER.0)?).await?.map(|c| c.account)
    };
    if let Some(o) = &organizer {
        fill_demo_legal_notice(&app, o.id).await?;
    }
    if zoom_sandbox.is_some() {
        connect_demo_organizer_to_zoom(&app).await?;
        if let Some(o) = &organizer {
            crate::events::sample::ensure(&app, o.id, &o.time_zone, stripe_sandbox.is_some()).await?;
        }
    }
    let mut sample_course = None;
    if line_sandbox.is_some() {
        connect_demo_instructor_to_line(&app).await?;
        let instructor = {
            let mut c = app.store.read().await?;
            accounts::credentials_by_email(&mut c, &Email::parse(DEMO_ORGANIZER.0)?).await?.map(|c| c.account)
        };
        if let Some(i) = instructor {
            let key =
                crate::courses::sample::ensure(&app, i.id, (DEMO_LINE.0, DEMO_LINE_NAME, DEMO_LINE.3), DEMO_LINE_LOGIN)
                    .await?;
            sample_course = Some(format!("{}/c/{key}", app.config.http.public_url.trim_end_matches('/')));
        }
    }
    let server = startup::Server::bind(app.clone()).await?;
    let addr = server.local_addr();
    let url = format!("http://{addr}/login");
    println!();
    println!("Tsunagu デモを起動しました / Tsunagu demo is running");
    println!("  コンソール / Console:   {url}");
    println!("  主催者・講師 / Organizer: {} / {}  (ビジネスプラン)", DEMO_ORGANIZER.0, DEMO_ORGANIZER.1);
    println!("  管理者 / Administrator:  {} / {}", DEMO_ADMIN.0, DEMO_ADMIN.1);
    println!(
        "  （パスワードを変更した場合は変更後のものでログインしてください / if you changed a password, use the new one）"
    );
    println!("  データ / Data:           {} (SQLite)", app.config.data.dir.display());
    println!("  メール / Mail:           送信せず「送信済みメール」に保存します (kept in the database)");
    if let Some(zoom) = &zoom_sandbox {
        println!(
            "  Zoom:                   サンドボックス {zoom}/ (作成したミーティング・登録者の一覧 / the Zoom sandbox)"
        );
        println!(
            "                          デモ主催者の基本設定は接続済みです / the demo organizer is already connected"
        );
        println!(
            "  イベント / Event:        申込状況サマリーにサンプル「{}」（申込 2 件）があります / a sample event with two applications",
            crate::events::sample::TITLE
        );
    }
    if let Some(stripe) = &stripe_sandbox {
        println!("  Stripe:                 サンドボックス {stripe}/ (支払いの一覧と返金 / payments and refunds)");
        println!(
            "                          デモ主催者の 決済（Stripe） はテストモードで接続済みです / connected in test mode"
        );
    }
    if let Some(line) = &line_sandbox {
        println!(
            "  LINE:                   サンドボックス {line}/ (生徒の友だち追加・ブロックと、届いたメッセージのトーク画面 / the LINE sandbox)"
        );
        println!(
            "                          デモ講師の公式LINE（{}）は接続済みです / the demo instructor's official account is connected",
            DEMO_LINE.3
        );
    }
    if let Some(course) = &sample_course {
        println!(
            "  コース / Course:         サンプル「{}」: {course} （受講生として開くと、LINE ログインと友だち追加を試せます / open it as a student）",
            crate::courses::sample::TITLE
        );
    }
    println!("  メディア / Media:        {}", media_line(&app.config));
    println!("  終了 / Stop:             Ctrl+C");
    println!();
    server.run(startup::shutdown_on_signals()).await
}

/// The demo organizer's 特定商取引法に基づく表記 (which a published event with a priced ticket
/// needs), filled with sample values once; an edit made during the demo is kept.
async fn fill_demo_legal_notice(app: &crate::app::SharedApp, account: tsunagu_core::AccountId) -> anyhow::Result<()> {
    let mut c = app.store.conn().await?;
    if tsunagu_store::stripe::legal_notice(&mut c, account).await?.is_some() {
        return Ok(());
    }
    let fields = serde_json::json!({
        "seller": "デモ主催者（サンプル）",
        "manager": "デモ 主催者",
        "address": "東京都千代田区丸の内1-1-1（サンプル）",
        "phone": "03-0000-0000（サンプル）",
        "email": DEMO_ORGANIZER.0,
        "price": "各イベントのページに記載しています（消費税込み）。",
        "payment": "クレジットカード、コンビニ払い、銀行振込",
        "timing": "カード: お申し込み時。コンビニ: お申し込みから 3 日以内。銀行振込: お申し込みから 7 日以内。",
        "delivery": "イベントの開催日時に Zoom で提供します。参加URLはお支払いの確認後にメールでお送りします。",
        "cancellation": "開催前日までのキャンセルは全額返金します（サンプル）。",
    });
    tsunagu_store::stripe::put_legal_notice(&mut c, account, &fields.to_string(), "", app.now()).await?;
    Ok(())
}

/// The demo organizer's Stripe account in the sandbox and its test-mode secret key.
pub const DEMO_STRIPE: (&str, &str) = ("acct_1TsunaguDemo", "sk_test_TsunaguDemoOrganizerKey0001");

/// Connect the demo organizer's 決済（Stripe） to the sandbox, unless they connected another key.
/// The sandbox forgets its webhook endpoints when the demo stops, so this runs on every start.
async fn connect_demo_organizer_to_stripe(app: &crate::app::SharedApp) -> anyhow::Result<()> {
    let organizer = {
        let mut c = app.store.read().await?;
        accounts::credentials_by_email(&mut c, &Email::parse(DEMO_ORGANIZER.0)?).await?.map(|c| c.account)
    };
    let Some(o) = organizer else { return Ok(()) };
    let key = tsunagu_stripe::ApiKey::parse(DEMO_STRIPE.1).map_err(|e| anyhow::anyhow!("{e}"))?;
    let current = {
        let mut c = app.store.read().await?;
        tsunagu_store::stripe::get_connection(&mut c, o.id).await?
    };
    if current.is_some_and(|c| c.key_hint != key.masked()) {
        return Ok(());
    }
    match crate::payments::settings::connect(app, o.id, key).await.map_err(|e| anyhow::anyhow!("{e:?}"))? {
        Ok(()) => Ok(()),
        Err(r) => anyhow::bail!("the demo organizer could not be connected to the Stripe sandbox: {}", r.message),
    }
}

/// The demo organizer's Server-to-Server app in the Zoom sandbox (Account ID, Client ID, Secret).
pub const DEMO_ZOOM_S2S: (&str, &str, &str) = ("demo-zoom-account", "demo-zoom-client-id", "demo-zoom-client-secret");
/// Tsunagu's OAuth app in the Zoom sandbox, for trying ［Zoom にログインして連携する］.
pub const DEMO_ZOOM_OAUTH: (&str, &str) = ("tsunagu-demo-oauth", "tsunagu-demo-oauth-secret");
/// The Zoom owner user of the demo account (the host of everything the demo creates).
pub const DEMO_ZOOM_OWNER: &str = "zoom-owner@example.com";

fn demo_zoom_sandbox(manager_url: &str) -> tsunagu_sandbox::zoom::ZoomSandbox {
    use tsunagu_sandbox::zoom::{OAuthApp, S2sApp, SandboxUser, ZoomSandbox};
    let sandbox = ZoomSandbox::new();
    let scopes: Vec<String> = tsunagu_zoom::scopes::REQUIRED.iter().map(|s| s.name.to_string()).collect();
    sandbox.add_app(S2sApp {
        account_id: DEMO_ZOOM_S2S.0.into(),
        client_id: DEMO_ZOOM_S2S.1.into(),
        client_secret: DEMO_ZOOM_S2S.2.into(),
        scopes: scopes.clone(),
    });
    sandbox.add_oauth_app(OAuthApp {
        client_id: DEMO_ZOOM_OAUTH.0.into(),
        client_secret: DEMO_ZOOM_OAUTH.1.into(),
        redirect_uri: format!("{}{}", manager_url.trim_end_matches('/'), crate::zoom::OAUTH_CALLBACK_PATH),
        scopes,
    });
    sandbox.add_user(SandboxUser {
        account_id: DEMO_ZOOM_S2S.0.into(),
        id: "demo-zoom-owner".into(),
        email: DEMO_ZOOM_OWNER.into(),
        first_name: "オーナー".into(),
        last_name: "デモ".into(),
        licensed: true,
        webinar_license: true,
    });
    // Only the demo's traffic: the log is for tests.
    sandbox.set_recording(false);
    sandbox
}

/// Fill in the demo organizer's 基本設定 with the sandbox's S2S app, unless they changed it.
async fn connect_demo_organizer_to_zoom(app: &crate::app::App) -> anyhow::Result<()> {
    use tsunagu_store::secrets;
    let mut c = app.store.conn().await?;
    let Some(creds) = accounts::credentials_by_email(&mut c, &Email::parse(DEMO_ORGANIZER.0)?).await? else {
        return Ok(());
    };
    let account = creds.account.id;
    if secrets::get_zoom(&mut c, account).await?.is_some() {
        return Ok(());
    }
    drop(c);
    let now = app.now();
    let (key_id, sealed) =
        app.keys.seal(DEMO_ZOOM_S2S.2, &crate::crypto::secret_aad(account, crate::zoom::ZOOM_CLIENT_SECRET));
    let mut tx = app.store.begin().await?;
    secrets::put_zoom(
        &mut tx,
        account,
        &secrets::ZoomCredentials {
            auth_method: "s2s".into(),
            zoom_account_id: DEMO_ZOOM_S2S.0.into(),
            client_id: DEMO_ZOOM_S2S.1.into(),
            updated_at: now,
        },
    )
    .await?;
    secrets::put(&mut tx, account, crate::zoom::ZOOM_CLIENT_SECRET, &key_id, &sealed, now).await?;
    tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
    Ok(())
}

/// The demo instructor's official LINE account in the LINE sandbox: Messaging API channel ID,
/// channel secret, bot user ID, basic ID and name.
pub const DEMO_LINE: (&str, &str, &str, &str) =
    ("2000000001", "demo-line-channel-secret", "U0000000000000000000000000000de01", "@tsunagu-demo");
/// The demo official account's name.
pub const DEMO_LINE_NAME: &str = "つなぐデモ講座";
/// Its LINE Login channel (same provider): channel ID and secret.
pub const DEMO_LINE_LOGIN: (&str, &str) = ("1600000001", "demo-line-login-secret");
/// Simulated students, friends of nobody until they add the account on the sandbox's page.
const DEMO_STUDENTS: &[(&str, &str)] = &[
    ("U0000000000000000000000000000d001", "山田 花子"),
    ("U0000000000000000000000000000d002", "佐藤 太郎"),
    ("U0000000000000000000000000000d003", "鈴木 一郎"),
];

fn demo_line_sandbox(public_url: &str) -> tsunagu_sandbox::line::LineSandbox {
    use tsunagu_sandbox::line::{LineChannelSpec, LineSandbox, LoginChannelSpec, SimUser};
    let sandbox = LineSandbox::new();
    sandbox.add_channel(LineChannelSpec {
        channel_id: DEMO_LINE.0.into(),
        channel_secret: DEMO_LINE.1.into(),
        bot_user_id: DEMO_LINE.2.into(),
        basic_id: DEMO_LINE.3.into(),
        display_name: DEMO_LINE_NAME.into(),
        monthly_quota: Some(200),
        login: Some(LoginChannelSpec {
            channel_id: DEMO_LINE_LOGIN.0.into(),
            channel_secret: DEMO_LINE_LOGIN.1.into(),
            redirect_uris: vec![format!("{}/line/callback", public_url.trim_end_matches('/'))],
        }),
    });
    for (id, name) in DEMO_STUDENTS {
        sandbox.add_user(SimUser { user_id: (*id).into(), display_name: (*name).into() });
    }
    sandbox.set_recording(false);
    sandbox
}

/// Connect the demo instructor's channel (sealed secret) and point its webhook at this app,
/// as an instructor does in the LINE Developers console.
async fn connect_demo_instructor_to_line(app: &crate::app::App) -> anyhow::Result<()> {
    let account = {
        let mut c = app.store.conn().await?;
        match accounts::credentials_by_email(&mut c, &Email::parse(DEMO_ORGANIZER.0)?).await? {
            Some(creds) => creds.account.id,
            None => return Ok(()),
        }
    };
    let known = crate::line::known_channel(app, DEMO_LINE.0).await?;
    if known.is_none_or(|k| k.account == account) {
        crate::line::save_channel(app, account, DEMO_LINE.0, DEMO_LINE.1, DEMO_LINE.2).await?;
    }
    let ch =
        tsunagu_line::Channel { id: DEMO_LINE.0.into(), secret: DEMO_LINE.1.into(), token_kind: Default::default() };
    app.line
        .set_webhook_endpoint(&ch, &crate::line::webhook_url(&app.config, DEMO_LINE.0))
        .await
        .map_err(|e| anyhow::anyhow!("LINE sandbox: {e}"))?;
    Ok(())
}

/// Where the demo keeps media and how it serves it. Plain http is the demo's exception to the
/// HTTPS rule; it is only harmless on loopback, and the line says which case this is.
fn media_line(config: &crate::config::Config) -> String {
    let m = &config.media;
    let place = if m.storage == "s3" {
        format!("S3 互換ストレージ（バケット {}）", m.s3_bucket)
    } else {
        m.local_dir.clone().unwrap_or_else(|| config.data.dir.join("media")).display().to_string()
    };
    let url = &config.http.public_url;
    let loopback = config.http.listen.parse::<std::net::SocketAddr>().is_ok_and(|a| a.ip().is_loopback());
    if url.starts_with("https://") {
        format!("{place} に保存し、{url}/media/ で配信します")
    } else if loopback {
        format!(
            "{place} に保存し、http のまま配信します（ループバックのデモだけの例外。本番の公開 URL は HTTPS が必要です）"
        )
    } else {
        format!(
            "{place} に保存し、http のまま配信します（デモだけの例外です。ループバック以外で公開していますが、LINE は HTTPS の URL からしかメディアを取得しないため、本物の LINE にはメディアが届きません）"
        )
    }
}
