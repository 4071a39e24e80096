//! Zoom in the app: one shared [`ZoomClient`] built from `[zoom]`, with its limits kept in the
//! database ([`crate::limits`]), the organizer's Zoom connection read from the database
//! (secrets opened here, never logged), OAuth tokens renewed under a lock on their sealed row,
//! and the connection check used by `tsunagu zoom check`.

pub mod check;
pub mod connect;
pub mod settings;
pub mod webhook;

use std::sync::Arc;

use tsunagu_core::AccountId;
use tsunagu_store::{Store, secrets};
use tsunagu_zoom::auth::S2sCredentials;
use tsunagu_zoom::limits::ZoomPlan;
use tsunagu_zoom::oauth::{BoxFuture, LockedTokens, OAuthApp, OAuthTokens, TokenStore};
use tsunagu_zoom::{Auth, ClientConfig, Organizer, ZoomClient};

use crate::app::App;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::crypto::{Keyring, secret_aad};

/// Sealed purpose of an S2S app's Client Secret (基本設定).
pub const ZOOM_CLIENT_SECRET: &str = "zoom.client_secret";
/// Sealed purpose of an organizer's OAuth tokens (JSON).
pub const ZOOM_OAUTH_TOKENS: &str = "zoom.oauth_tokens";
/// Where Zoom sends the organizer back after authorizing Tsunagu's OAuth app.
pub const OAUTH_CALLBACK_PATH: &str = "/zoom/oauth/callback";

/// A client for one-off use (no OAuth token storage): `tsunagu zoom check` with flags.
pub fn bare_client(config: &Config) -> ZoomClient {
    let mut cfg = ClientConfig::new(&config.zoom.api_base_url, &config.zoom.oauth_base_url);
    cfg.timeout = std::time::Duration::from_secs(config.zoom.timeout_seconds);
    ZoomClient::new(cfg)
}

/// The process's Zoom client: organizers' OAuth tokens are renewed under a lock (see
/// [`SealedTokens`]), so instances sharing the database never spend the same refresh token
/// twice; daily allowances are counted in `store` (on the UTC day of `clock`), and on
/// PostgreSQL the per-second limits are shared with every process on the database.
pub fn client(config: &Config, store: Store, keys: Keyring, clock: SharedClock) -> ZoomClient {
    let database = config.database.url.clone();
    let daily = crate::limits::daily_counter(&store);
    let rate = crate::limits::rate_budget(&store);
    let client = bare_client(config)
        .with_token_store(Arc::new(SealedTokens { store, keys, database }))
        .with_clock(Arc::new(move || clock.now_ms()))
        .with_daily_counter(daily);
    match rate {
        Some(rate) => client.with_rate_budget(rate),
        None => client,
    }
}

/// Organizers' OAuth tokens, sealed in `encrypted_secrets` (key: the account id). A renewal
/// runs under a lock: on PostgreSQL a row lock (`FOR UPDATE`) held by a transaction, which
/// every instance respects; on SQLite, whose database one process serves, a lock of this
/// process (per database and organizer), so that the one writer connection is not held while
/// Zoom answers the refresh.
struct SealedTokens {
    store: Store,
    keys: Keyring,
    database: String,
}

type LocalLocks = std::sync::Mutex<std::collections::HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>>;
static LOCAL_LOCKS: std::sync::OnceLock<LocalLocks> = std::sync::OnceLock::new();

struct LockedSealedTokens {
    held: Held,
    store: Store,
    keys: Keyring,
    account: AccountId,
    tokens: Option<OAuthTokens>,
}

enum Held {
    Row(tsunagu_store::Tx),
    Local(tokio::sync::OwnedMutexGuard<()>),
}

impl TokenStore for SealedTokens {
    fn lock(&self, key: String) -> BoxFuture<Result<Box<dyn LockedTokens>, String>> {
        let (store, keys) = (self.store.clone(), self.keys.clone());
        let local = match store.backend() {
            tsunagu_store::Backend::Postgres => None,
            tsunagu_store::Backend::Sqlite => {
                let mut m = LOCAL_LOCKS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
                Some(m.entry((self.database.clone(), key.clone())).or_default().clone())
            }
        };
        Box::pin(async move {
            let locked = lock_tokens(&store, keys, &key, local).await;
            if let Err(e) = &locked {
                tracing::error!(key = %key, error = %format!("{e:#}"), "cannot lock stored zoom oauth tokens");
            }
            locked.map(|l| Box::new(l) as Box<dyn LockedTokens>).map_err(|e| format!("{e:#}"))
        })
    }
}

async fn lock_tokens(
    store: &Store,
    keys: Keyring,
    key: &str,
    local: Option<Arc<tokio::sync::Mutex<()>>>,
) -> anyhow::Result<LockedSealedTokens> {
    let account = AccountId(key.parse()?);
    let (held, sealed) = match local {
        Some(lock) => {
            let guard = lock.lock_owned().await;
            let mut c = store.read().await?;
            let sealed = secrets::get(&mut c, account, ZOOM_OAUTH_TOKENS).await?;
            (Held::Local(guard), sealed)
        }
        None => {
            let mut tx = store.begin().await?;
            let sealed = secrets::get_for_update(&mut tx, store.backend(), account, ZOOM_OAUTH_TOKENS).await?;
            (Held::Row(tx), sealed)
        }
    };
    let tokens = match sealed {
        Some(s) => {
            Some(serde_json::from_str(&keys.open(&s.key_id, &s.sealed, &secret_aad(account, ZOOM_OAUTH_TOKENS))?)?)
        }
        None => None,
    };
    Ok(LockedSealedTokens { held, store: store.clone(), keys, account, tokens })
}

impl LockedTokens for LockedSealedTokens {
    fn tokens(&self) -> Option<&OAuthTokens> {
        self.tokens.as_ref()
    }

    fn save(self: Box<Self>, tokens: OAuthTokens) -> BoxFuture<Result<(), String>> {
        Box::pin(async move {
            let account = self.account;
            let saved = save_locked(*self, &tokens).await;
            if let Err(e) = &saved {
                // The client keeps the pair and offers it again; an operator should know meanwhile.
                tracing::error!(account_id = %account, error = %format!("{e:#}"), "cannot store renewed zoom oauth tokens");
            }
            saved.map_err(|e| format!("{e:#}"))
        })
    }
}

async fn save_locked(locked: LockedSealedTokens, tokens: &OAuthTokens) -> anyhow::Result<()> {
    let json = serde_json::to_string(tokens)?;
    let (key_id, sealed) = locked.keys.seal(&json, &secret_aad(locked.account, ZOOM_OAUTH_TOKENS));
    let now = jiff::Timestamp::now().as_millisecond();
    match locked.held {
        Held::Row(mut tx) => {
            secrets::put(&mut tx, locked.account, ZOOM_OAUTH_TOKENS, &key_id, &sealed, now).await?;
            tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
        }
        Held::Local(guard) => {
            let mut c = locked.store.conn().await?;
            secrets::put(&mut c, locked.account, ZOOM_OAUTH_TOKENS, &key_id, &sealed, now).await?;
            drop(guard);
        }
    }
    Ok(())
}

/// Tsunagu's OAuth app, when configured.
pub fn oauth_app(config: &Config) -> Option<OAuthApp> {
    if config.zoom.oauth_client_id.is_empty() {
        return None;
    }
    Some(OAuthApp {
        client_id: config.zoom.oauth_client_id.clone(),
        client_secret: config.zoom.oauth_client_secret.expose().to_string(),
        redirect_uri: format!("{}{OAUTH_CALLBACK_PATH}", config.http.manager_url.trim_end_matches('/')),
    })
}

/// The plan whose rate figures apply to an organizer (`zoom.plan`, Pro unless configured).
pub fn plan(config: &Config) -> ZoomPlan {
    ZoomPlan::parse(&config.zoom.plan).unwrap_or_default()
}

/// Seal and store an organizer's first OAuth tokens with the connection record.
pub async fn save_oauth_connection(
    app: &App,
    account: AccountId,
    zoom_account_id: &str,
    tokens: &OAuthTokens,
) -> anyhow::Result<()> {
    let oauth = oauth_app(&app.config).ok_or_else(|| anyhow::anyhow!("no Zoom OAuth app configured"))?;
    let json = serde_json::to_string(tokens)?;
    let (key_id, sealed) = app.keys.seal(&json, &secret_aad(account, ZOOM_OAUTH_TOKENS));
    let now = app.now();
    let mut tx = app.store.begin().await?;
    secrets::put_zoom(
        &mut tx,
        account,
        &secrets::ZoomCredentials {
            auth_method: "oauth".into(),
            zoom_account_id: zoom_account_id.to_string(),
            client_id: oauth.client_id,
            updated_at: now,
        },
    )
    .await?;
    secrets::put(&mut tx, account, ZOOM_OAUTH_TOKENS, &key_id, &sealed, now).await?;
    tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
    Ok(())
}

/// The organizer's stored Zoom connection, or `None` when 基本設定 is not filled in. Read it for
/// each unit of work: the client caches tokens per credentials, so credentials saved through
/// any instance are used from the next read on.
pub async fn organizer(app: &App, account: AccountId) -> anyhow::Result<Option<Organizer>> {
    // Reads only: a read-only connection, so that every registration job does not take SQLite's
    // one writer for it.
    let mut c = app.store.read().await?;
    let Some(creds) = secrets::get_zoom(&mut c, account).await? else {
        return Ok(None);
    };
    let purpose = if creds.auth_method == "oauth" { ZOOM_OAUTH_TOKENS } else { ZOOM_CLIENT_SECRET };
    let Some(sealed) = secrets::get(&mut c, account, purpose).await? else {
        return Ok(None);
    };
    let plain = app.keys.open(&sealed.key_id, &sealed.sealed, &secret_aad(account, purpose))?;
    let auth = if creds.auth_method == "oauth" {
        let Some(oauth) = oauth_app(&app.config) else {
            anyhow::bail!(
                "account {account} is connected through the Zoom OAuth app, but zoom.oauth_client_id is not set"
            );
        };
        Auth::OAuth { app: oauth, tokens: serde_json::from_str(&plain)? }
    } else {
        Auth::S2s(S2sCredentials {
            account_id: creds.zoom_account_id,
            client_id: creds.client_id,
            client_secret: plain,
        })
    };
    Ok(Some(Organizer { key: account.0.to_string(), auth, plan: plan(&app.config) }))
}

/// 基本設定 (the organizer's Zoom credentials) and connecting through Tsunagu's Zoom OAuth app.
pub fn routes() -> axum::Router<crate::app::SharedApp> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/settings/basic", get(settings::show).post(settings::save))
        .route("/settings/zoom/connect", post(connect::start))
        .route(OAUTH_CALLBACK_PATH, get(connect::callback))
        .route("/zoom/webhook/{account_key}", post(webhook::receive))
}
