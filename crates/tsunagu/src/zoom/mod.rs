//! Zoom in the app: one shared [`ZoomClient`] built from `[zoom]`, the organizer's Zoom
//! connection read from the database (secrets opened here, never logged), and the connection
//! check used by `tsunagu zoom check`.

pub mod check;

use tsunagu_core::AccountId;
use tsunagu_store::secrets;
use tsunagu_zoom::auth::S2sCredentials;
use tsunagu_zoom::limits::ZoomPlan;
use tsunagu_zoom::{Auth, ClientConfig, Organizer, ZoomClient};

use crate::app::App;
use crate::config::ZoomConfig;
use crate::crypto::secret_aad;
use crate::web::settings::ZOOM_CLIENT_SECRET;

pub fn client(config: &ZoomConfig) -> ZoomClient {
    let mut cfg = ClientConfig::new(&config.api_base_url, &config.oauth_base_url);
    cfg.timeout = std::time::Duration::from_secs(config.timeout_seconds);
    ZoomClient::new(cfg)
}

/// The plan whose rate figures apply to an organizer (`zoom.plan`, Pro unless configured).
pub fn plan(config: &ZoomConfig) -> ZoomPlan {
    ZoomPlan::parse(&config.plan).unwrap_or_default()
}

/// The organizer's stored Zoom connection, or `None` when 基本設定 is not filled in.
pub async fn organizer(app: &App, account: AccountId) -> anyhow::Result<Option<Organizer>> {
    let mut c = app.store.conn().await?;
    let Some(creds) = secrets::get_zoom(&mut c, account).await? else {
        return Ok(None);
    };
    let Some(sealed) = secrets::get(&mut c, account, ZOOM_CLIENT_SECRET).await? else {
        return Ok(None);
    };
    let client_secret = app.keys.open(&sealed.key_id, &sealed.sealed, &secret_aad(account, ZOOM_CLIENT_SECRET))?;
    Ok(Some(Organizer {
        key: account.to_string(),
        auth: Auth::S2s(S2sCredentials {
            account_id: creds.zoom_account_id,
            client_id: creds.client_id,
            client_secret,
        }),
        plan: plan(&app.config.zoom),
    }))
}
