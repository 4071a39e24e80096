//! LINE in the app: instructors' Messaging API channels (secrets sealed at rest, opened once
//! and kept in memory for signature checks), the webhook intake ([`webhook`]) and the job that
//! handles stored events ([`events`]).

pub mod check;
pub mod events;
pub mod jobs;
pub mod webhook;

use std::collections::HashMap;
use std::sync::RwLock;

use tsunagu_core::AccountId;
use tsunagu_store::{line as store, secrets};

use crate::app::App;
use crate::crypto::secret_aad;

/// Sealed purpose of a Messaging API channel secret.
pub const CHANNEL_SECRET: &str = "line.channel_secret";

/// A channel's owner and secret, as the intake needs them on every request.
#[derive(Clone)]
pub struct KnownChannel {
    pub account: AccountId,
    pub secret: String,
}

/// Channels whose secret has been opened by this process.
#[derive(Default)]
pub struct ChannelCache {
    map: RwLock<HashMap<String, KnownChannel>>,
}

impl ChannelCache {
    fn get(&self, channel_id: &str) -> Option<KnownChannel> {
        self.map.read().ok()?.get(channel_id).cloned()
    }

    fn put(&self, channel_id: &str, c: KnownChannel) {
        if let Ok(mut m) = self.map.write() {
            m.insert(channel_id.to_string(), c);
        }
    }

    pub fn forget(&self, channel_id: &str) {
        if let Ok(mut m) = self.map.write() {
            m.remove(channel_id);
        }
    }
}

/// Connect (or update) an instructor's Messaging API channel: the secret is sealed.
pub async fn save_channel(
    app: &App,
    account: AccountId,
    channel_id: &str,
    channel_secret: &str,
    bot_user_id: &str,
) -> anyhow::Result<()> {
    let now = app.now();
    let (key_id, sealed) = app.keys.seal(channel_secret, &secret_aad(account, &purpose(channel_id)));
    let mut tx = app.store.begin().await?;
    store::put_channel(&mut tx, account, channel_id, bot_user_id, now).await?;
    secrets::put(&mut tx, account, &purpose(channel_id), &key_id, &sealed, now).await?;
    tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
    app.line_channels.forget(channel_id);
    Ok(())
}

/// One sealed secret per channel (an instructor may connect more than one).
fn purpose(channel_id: &str) -> String {
    format!("{CHANNEL_SECRET}:{channel_id}")
}

/// The channel's owner and secret, or `None` for a channel nobody connected.
pub async fn known_channel(app: &App, channel_id: &str) -> anyhow::Result<Option<KnownChannel>> {
    if let Some(c) = app.line_channels.get(channel_id) {
        return Ok(Some(c));
    }
    let mut c = app.store.conn().await?;
    let Some(ch) = store::channel(&mut c, channel_id).await? else {
        return Ok(None);
    };
    let Some(sealed) = secrets::get(&mut c, ch.account_id, &purpose(channel_id)).await? else {
        return Ok(None);
    };
    let secret = app.keys.open(&sealed.key_id, &sealed.sealed, &secret_aad(ch.account_id, &purpose(channel_id)))?;
    let known = KnownChannel { account: ch.account_id, secret };
    app.line_channels.put(channel_id, known.clone());
    Ok(Some(known))
}

/// The Messaging API client for this process's configuration.
pub fn client(config: &crate::config::Config) -> tsunagu_line::LineClient {
    tsunagu_line::LineClient::new(tsunagu_line::LineConfig::new(&config.line.api_base_url))
}

/// This installation's webhook URL for a channel (what LINE Developers must show).
pub fn webhook_url(config: &crate::config::Config, channel_id: &str) -> String {
    format!("{}/line/webhook/{channel_id}", config.http.public_url.trim_end_matches('/'))
}

pub use jobs::job_kinds;
