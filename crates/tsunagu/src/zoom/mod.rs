//! Zoom in the app: one shared [`ZoomClient`] built from `[zoom]`, with its limits kept in the
//! database ([`crate::limits`]), the organizer's Zoom connection read from the database
//! (secrets opened here, never logged), rotated OAuth tokens sealed and stored before use, and
//! the connection check used by `tsunagu zoom check`.

pub mod check;

use std::sync::Arc;

use tsunagu_core::AccountId;
use tsunagu_store::{Store, secrets};
use tsunagu_zoom::auth::S2sCredentials;
use tsunagu_zoom::limits::ZoomPlan;
use tsunagu_zoom::oauth::{OAuthApp, OAuthTokens};
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

/// The process's Zoom client: rotated OAuth tokens are sealed into `store` before use, daily
/// allowances are counted in `store` (on the UTC day of `clock`), and on PostgreSQL the
/// per-second limits are shared with every process on the database.
pub fn client(config: &Config, store: Store, keys: Keyring, clock: SharedClock) -> ZoomClient {
    let daily = crate::limits::daily_counter(&store);
    let rate = crate::limits::rate_budget(&store);
    let persist: tsunagu_zoom::client::PersistTokens = Arc::new(move |key: String, tokens: OAuthTokens| {
        let (store, keys) = (store.clone(), keys.clone());
        Box::pin(async move { store_tokens(&store, &keys, &key, &tokens).await.map_err(|e| format!("{e:#}")) })
    });
    let client = bare_client(config)
        .with_persist(persist)
        .with_clock(Arc::new(move || clock.now_ms()))
        .with_daily_counter(daily);
    match rate {
        Some(rate) => client.with_rate_budget(rate),
        None => client,
    }
}

async fn store_tokens(store: &Store, keys: &Keyring, key: &str, tokens: &OAuthTokens) -> anyhow::Result<()> {
    let account = AccountId(key.parse()?);
    let json = serde_json::to_string(tokens)?;
    let (key_id, sealed) = keys.seal(&json, &secret_aad(account, ZOOM_OAUTH_TOKENS));
    let mut c = store.conn().await?;
    secrets::put(&mut c, account, ZOOM_OAUTH_TOKENS, &key_id, &sealed, jiff::Timestamp::now().as_millisecond()).await?;
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

/// The organizer's stored Zoom connection, or `None` when 基本設定 is not filled in.
pub async fn organizer(app: &App, account: AccountId) -> anyhow::Result<Option<Organizer>> {
    let mut c = app.store.conn().await?;
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
