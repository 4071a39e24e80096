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
    println!("  終了 / Stop:             Ctrl+C");
    println!();
    server.run(startup::shutdown_on_signals()).await
}
