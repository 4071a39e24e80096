//! The `tsunagu` command line.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tsunagu_core::{Email, Plan, Role};
use tsunagu_store::{accounts, secrets};

use crate::accounts::SignupInput;
use crate::config::Config;
use crate::crypto::{Keyring, MasterKey, secret_aad};
use crate::startup;

#[derive(Parser, Debug)]
#[command(
    name = "tsunagu",
    version,
    about = "Tsunagu (つなぐ): Zoom-linked paid events and LINE-delivered online courses"
)]
pub struct Cli {
    /// Configuration file (TOML). Environment variables TSUNAGU_SECTION__KEY override it.
    #[arg(long, global = true, env = "TSUNAGU_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the web console and the job workers (production).
    Serve,
    /// Run everything embedded with demo accounts, for trying Tsunagu in a browser.
    Demo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Directory for the demo's database and master key.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Platform administration.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Zoom diagnostics.
    Zoom {
        #[command(subcommand)]
        command: ZoomCommand,
    },
    /// Stripe diagnostics.
    Stripe {
        #[command(subcommand)]
        command: StripeCommand,
    },
    /// LINE diagnostics.
    Line {
        #[command(subcommand)]
        command: LineCommand,
    },
    /// Media for step messages.
    Media {
        #[command(subcommand)]
        command: MediaCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum MediaCommand {
    /// Print, as JSON, what the upload intake would decide for FILE: its type (from the content),
    /// size, duration, dimensions and the conversion LINE needs, or why it is refused. Exits 0
    /// when the file would be accepted, 1 when refused.
    Inspect {
        /// The file to inspect.
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum StripeCommand {
    /// Check an organizer's Stripe connection: whether the stored key works and its mode, the
    /// permissions a restricted key lacks, the payment methods the account can take, and the
    /// webhook endpoint with its API version and events. Exits 0 only when all is well.
    Check {
        /// Email of the Tsunagu account whose connection to check.
        #[arg(long)]
        account: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum LineCommand {
    /// Check a Messaging API channel: token, bot info, the webhook endpoint registered at LINE
    /// and LINE's test of it, quota and consumption. Exits 0 only when all is well. The channel
    /// comes from an account (--account) or from --channel-id with the secret in the
    /// environment variable LINE_CHANNEL_SECRET or on standard input.
    Check {
        /// Email of the Tsunagu account whose connected channel to check.
        #[arg(long)]
        account: Option<String>,
        /// The Messaging API channel ID (with --account: which of its channels).
        #[arg(long)]
        channel_id: Option<String>,
        /// Read the channel secret from the first line of standard input.
        #[arg(long)]
        channel_secret_stdin: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ZoomCommand {
    /// Check a Zoom connection: token, granted and missing scopes, the host user, the rate
    /// figures in use. Exits 0 only when everything the manual needs is there.
    /// Credentials come from an account's 基本設定 (--account) or from flags, with the Client
    /// Secret read from the environment variable ZOOM_CLIENT_SECRET or standard input.
    Check {
        /// Email of the Tsunagu account whose stored Zoom settings to use.
        #[arg(long, conflicts_with_all = ["zoom_account_id", "client_id"])]
        account: Option<String>,
        /// Zoom Account ID (Server-to-Server OAuth app).
        #[arg(long, requires = "client_id")]
        zoom_account_id: Option<String>,
        /// Zoom Client ID.
        #[arg(long, requires = "zoom_account_id")]
        client_id: Option<String>,
        /// Read the Client Secret from the first line of standard input.
        #[arg(long)]
        client_secret_stdin: bool,
        /// The host user (Zoom user id or email). Default: the token's own user (`me`).
        #[arg(long, default_value = "me")]
        host: String,
        /// Zoom plan for the rate figures (free, pro, business); default: zoom.plan.
        #[arg(long)]
        plan: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print a commented example configuration.
    Example,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create an account. Without --password-stdin a random password is generated and printed.
    CreateAccount {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// free, standard, business, special (or フリー, スタンダード, ビジネス, スペシャル).
        #[arg(long, default_value = "free")]
        plan: String,
        /// Make the account a platform administrator.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change an account's plan.
    SetPlan {
        #[arg(long)]
        email: String,
        #[arg(long)]
        plan: String,
    },
    /// Re-encrypt every stored secret under a newly generated master key. The key file keeps
    /// the previous key until `--prune`, run after every instance has been restarted.
    RotateKey {
        /// Remove previous keys from the key file (re-sealing anything still under them).
        #[arg(long)]
        prune: bool,
    },
}

pub async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve => {
            crate::media::require_https(&config)?;
            let app = startup::build_app(config, startup::system_clock()).await?;
            let server = startup::Server::bind(app).await?;
            server.run(startup::shutdown_on_signals()).await
        }
        Command::Demo { listen, data_dir } => crate::demo::run(config, cli.config.is_some(), &listen, &data_dir).await,
        Command::Migrate => {
            let store = startup::open_store(&config).await?;
            let applied = store.migrate().await?;
            println!("migrations up to date ({} applied now)", applied.len());
            Ok(())
        }
        Command::Config { command: ConfigCommand::Example } => {
            print!("{}", crate::config::EXAMPLE);
            Ok(())
        }
        Command::Admin { command } => admin(command, config).await,
        Command::Media { command: MediaCommand::Inspect { file } } => {
            let (accepted, report) =
                crate::media::inspect_json(&crate::media::process::Tools::from_config(&config), &file).await;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if accepted { Ok(()) } else { std::process::exit(1) }
        }
        Command::Line { command: LineCommand::Check { account, channel_id, channel_secret_stdin } } => {
            let (channel_id, secret) = match account {
                Some(email) => {
                    let app = startup::build_app(config.clone(), startup::system_clock()).await?;
                    let email = Email::parse(&email).map_err(|e| anyhow::anyhow!("{e}"))?;
                    let mut c = app.store.conn().await?;
                    let Some(creds) = accounts::credentials_by_email(&mut c, &email).await? else {
                        bail!("no account with email {email}");
                    };
                    let channels = tsunagu_store::line::channels_of(&mut c, creds.account.id).await?;
                    drop(c);
                    let Some(ch) =
                        channels.into_iter().find(|ch| channel_id.as_ref().is_none_or(|id| *id == ch.channel_id))
                    else {
                        bail!(
                            "{email} には公式LINEのチャネルが連携されていません / no LINE channel connected for {email}"
                        );
                    };
                    let known = crate::line::known_channel(&app, &ch.channel_id)
                        .await?
                        .context("the channel's secret is missing")?;
                    (ch.channel_id, known.secret)
                }
                None => {
                    let id = channel_id.context("give --account EMAIL or --channel-id ID")?;
                    let secret = if channel_secret_stdin {
                        let mut line = String::new();
                        std::io::stdin()
                            .lock()
                            .read_line(&mut line)
                            .context("cannot read the channel secret from stdin")?;
                        line.trim().to_string()
                    } else {
                        std::env::var("LINE_CHANNEL_SECRET").context(
                            "give the channel secret in the environment variable LINE_CHANNEL_SECRET or with --channel-secret-stdin",
                        )?
                    };
                    (id, secret)
                }
            };
            let ch = tsunagu_line::Channel { id: channel_id.clone(), secret, token_kind: Default::default() };
            let client = crate::line::bare_client(&config);
            let report = crate::line::check::run(&client, &ch, &crate::line::webhook_url(&config, &channel_id)).await;
            print!("{}", report.render());
            if report.ok() { Ok(()) } else { std::process::exit(1) }
        }
        Command::Stripe { command: StripeCommand::Check { account } } => {
            let app = startup::build_app(config.clone(), startup::system_clock()).await?;
            let email = Email::parse(&account).map_err(|e| anyhow::anyhow!("{e}"))?;
            let creds = {
                let mut c = app.store.conn().await?;
                accounts::credentials_by_email(&mut c, &email).await?
            };
            let Some(creds) = creds else { bail!("no account with email {email}") };
            let report = crate::payments::check::run(&app, creds.account.id).await?;
            print!("{}", report.render());
            if report.ok() { Ok(()) } else { std::process::exit(1) }
        }
        Command::Zoom {
            command: ZoomCommand::Check { account, zoom_account_id, client_id, client_secret_stdin, host, plan },
        } => {
            let plan = match plan {
                Some(p) => tsunagu_zoom::limits::ZoomPlan::parse(&p)
                    .with_context(|| format!("unknown Zoom plan {p:?}: use free, pro or business"))?,
                None => crate::zoom::plan(&config),
            };
            let mut client = None;
            let org = match (account, zoom_account_id, client_id) {
                (Some(email), _, _) => {
                    let app = startup::build_app(config.clone(), startup::system_clock()).await?;
                    let email = Email::parse(&email).map_err(|e| anyhow::anyhow!("{e}"))?;
                    let mut c = app.store.conn().await?;
                    let Some(creds) = accounts::credentials_by_email(&mut c, &email).await? else {
                        bail!("no account with email {email}");
                    };
                    drop(c);
                    let Some(mut org) = crate::zoom::organizer(&app, creds.account.id).await? else {
                        bail!(
                            "{email} には Zoom の基本設定（Account ID・Client ID・Client Secret）がありません / no Zoom settings stored for {email}"
                        );
                    };
                    org.plan = plan;
                    client = Some(crate::zoom::client(&config, app.store.clone(), app.keys.clone(), app.clock.clone()));
                    org
                }
                (None, Some(zoom_account_id), Some(client_id)) => {
                    let client_secret = if client_secret_stdin {
                        let mut line = String::new();
                        std::io::stdin()
                            .lock()
                            .read_line(&mut line)
                            .context("cannot read the Client Secret from stdin")?;
                        line.trim().to_string()
                    } else {
                        std::env::var("ZOOM_CLIENT_SECRET").context(
                            "give the Client Secret in the environment variable ZOOM_CLIENT_SECRET or with --client-secret-stdin",
                        )?
                    };
                    tsunagu_zoom::Organizer {
                        key: format!("cli:{zoom_account_id}"),
                        auth: tsunagu_zoom::Auth::S2s(tsunagu_zoom::auth::S2sCredentials {
                            account_id: zoom_account_id,
                            client_id,
                            client_secret,
                        }),
                        plan,
                    }
                }
                _ => bail!("give --account EMAIL, or --zoom-account-id and --client-id"),
            };
            let client = client.unwrap_or_else(|| crate::zoom::bare_client(&config));
            let report = crate::zoom::check::run(&client, &org, &host).await;
            print!("{}", report.render());
            if report.ok() { Ok(()) } else { std::process::exit(1) }
        }
    }
}

async fn admin(command: AdminCommand, config: Config) -> anyhow::Result<()> {
    match command {
        AdminCommand::CreateAccount { email, name, plan, admin, password_stdin } => {
            let plan = parse_plan(&plan)?;
            let (password, generated) = if password_stdin {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line).context("cannot read the password from stdin")?;
                (line.trim_end_matches(['\r', '\n']).to_string(), false)
            } else {
                (crate::crypto::random_token(12), true)
            };
            let app = startup::build_app(config, startup::system_clock()).await?;
            let role = if admin { Role::Admin } else { Role::Member };
            let input = SignupInput {
                email: &email,
                name: &name,
                password: &password,
                password_confirm: &password,
                plan,
                role,
            };
            let account = crate::accounts::sign_up(&app, &input).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("created account {} <{}> plan={} role={}", account.id, account.email, plan.code(), role.code());
            if generated {
                println!("password: {password}");
            }
            Ok(())
        }
        AdminCommand::SetPlan { email, plan } => {
            let plan = parse_plan(&plan)?;
            let email = Email::parse(&email).map_err(|e| anyhow::anyhow!("{e}"))?;
            let store = startup::open_store(&config).await?;
            let mut c = store.conn().await?;
            let Some(creds) = accounts::credentials_by_email(&mut c, &email).await? else {
                bail!("no account with email {email}");
            };
            accounts::set_plan(&mut c, creds.account.id, plan, crate::clock::Clock::now_ms(&crate::clock::SystemClock))
                .await?;
            println!("{email}: plan is now {} ({})", plan.code(), plan.label());
            Ok(())
        }
        AdminCommand::RotateKey { prune } => rotate_key(config, prune).await,
    }
}

fn parse_plan(s: &str) -> anyhow::Result<Plan> {
    Plan::parse(s).with_context(|| format!("unknown plan {s:?}: use free, standard, business or special"))
}

/// Re-seal every secret not under the keyring's current key, in one transaction.
async fn reseal_all(store: &tsunagu_store::Store, ring: &Keyring) -> anyhow::Result<usize> {
    let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
    let current = ring.current().id().to_string();
    let mut tx = store.begin().await?;
    let all = secrets::all_for_rotation(&mut tx).await?;
    let mut n = 0;
    for s in all.iter().filter(|s| s.key_id != current) {
        let aad = secret_aad(s.account_id, &s.purpose);
        let plain = ring.open(&s.key_id, &s.sealed, &aad).with_context(|| format!("cannot open secret {}", s.id))?;
        let (kid, sealed) = ring.seal(&plain, &aad);
        secrets::reseal(&mut tx, s.id, &kid, &sealed, now).await?;
        n += 1;
    }
    tx.commit().await?;
    Ok(n)
}

/// Two steps, so that no secret is ever left under a key that is gone:
/// 1. `rotate-key`: write the new key first in the file (old keys kept), re-seal everything.
///    Any interruption leaves every secret readable; run it again to finish.
/// 2. `rotate-key --prune`, after every instance was restarted (so none seals with an old key):
///    re-seal whatever is still under an old key, then drop the old keys from the file.
async fn rotate_key(config: Config, prune: bool) -> anyhow::Result<()> {
    if !config.secrets.master_key.is_empty() {
        bail!(
            "the master key is given inline (secrets.master_key); rotate-key manages key files only: move the key to secrets.master_key_file first"
        );
    }
    let path = config.master_key_path();
    let old = startup::load_keyring(&config, false)?;
    let store = startup::open_store(&config).await?;
    if prune {
        let n = reseal_all(&store, &old).await?;
        let mut c = store.conn().await?;
        let left = secrets::count_not_under(&mut c, old.current().id()).await?;
        if left > 0 {
            bail!("{left} secret(s) are still under an old key (written meanwhile?); run the command again");
        }
        Keyring::new(old.current().clone()).write_file(&path)?;
        println!("re-sealed {n} secret(s); {} now holds only key {}.", path.display(), old.current().id());
        return Ok(());
    }
    let new = MasterKey::generate();
    let mut ring = Keyring::new(new.clone());
    for k in old.keys() {
        ring = ring.with_previous(k.clone());
    }
    ring.write_file(&path)?;
    let n = reseal_all(&store, &ring).await?;
    println!(
        "re-encrypted {n} secret(s) under key {}. {} keeps the previous key(s) so that running instances can still read what they hold. Restart every instance, then run `tsunagu admin rotate-key --prune`.",
        new.id(),
        path.display()
    );
    Ok(())
}
