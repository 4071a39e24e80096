//! LINE in the app: instructors' Messaging API channels (secrets sealed at rest, opened and
//! kept in memory for a bounded time for signature checks), the webhook intake ([`webhook`])
//! and the job that handles stored events ([`events`]).

pub mod check;
pub mod events;
pub mod jobs;
pub mod link;
pub mod login;
pub mod webhook;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use tsunagu_core::AccountId;
use tsunagu_store::{StoreError, line as store, secrets};

use crate::app::App;
use crate::crypto::secret_aad;

/// Sealed purpose of a Messaging API channel secret.
pub const CHANNEL_SECRET: &str = "line.channel_secret";

/// How long an opened channel is trusted before it is read again: a secret changed, or a
/// channel removed, through any instance sharing the database stops being accepted by every
/// instance within this time.
pub const CHANNEL_TTL_MS: i64 = 30_000;
/// How long "no such channel" is remembered, so that requests for an unknown channel id do
/// not each cost a database lookup.
pub const MISS_TTL_MS: i64 = 5_000;
/// Unknown channel ids remembered at most: random ids cannot grow memory beyond this.
pub const MISS_CAPACITY: usize = 10_000;
/// Longest channel id accepted (LINE's are 10 digits).
const MAX_CHANNEL_ID_LEN: usize = 64;

/// A channel's owner and secret, as the intake needs them on every request.
#[derive(Clone)]
pub struct KnownChannel {
    pub account: AccountId,
    pub secret: String,
}

/// Channels this process has looked up: found ones (secret opened) for [`CHANNEL_TTL_MS`],
/// unknown ones for [`MISS_TTL_MS`]. Times come from the app's clock.
#[derive(Default)]
pub struct ChannelCache {
    known: RwLock<HashMap<String, (KnownChannel, i64)>>,
    unknown: Mutex<HashMap<String, i64>>,
    /// Bumped by every [`ChannelCache::forget`]: a lookup that read the database before it
    /// does not put what it read into the cache.
    generation: AtomicU64,
    lookups: AtomicU64,
}

fn fresh(at: i64, now: i64, ttl: i64) -> bool {
    // A clock that went back counts as expired.
    at <= now && now - at < ttl
}

impl ChannelCache {
    /// `Some(found)` while the cache may answer, `None` when the database must.
    fn get(&self, channel_id: &str, now: i64) -> Option<Option<KnownChannel>> {
        if let Ok(m) = self.known.read()
            && let Some((c, at)) = m.get(channel_id)
            && fresh(*at, now, CHANNEL_TTL_MS)
        {
            return Some(Some(c.clone()));
        }
        if let Ok(m) = self.unknown.lock()
            && let Some(at) = m.get(channel_id)
            && fresh(*at, now, MISS_TTL_MS)
        {
            return Some(None);
        }
        None
    }

    /// What a lookup that started at `generation` and `now` found.
    fn put(&self, channel_id: &str, found: Option<KnownChannel>, generation: u64, now: i64) {
        match found {
            Some(c) => {
                let Ok(mut m) = self.known.write() else { return };
                if self.generation.load(Ordering::SeqCst) == generation {
                    m.insert(channel_id.to_string(), (c, now));
                }
            }
            None => {
                if let Ok(mut m) = self.known.write() {
                    m.remove(channel_id);
                }
                let Ok(mut m) = self.unknown.lock() else { return };
                if m.len() >= MISS_CAPACITY {
                    m.retain(|_, at| fresh(*at, now, MISS_TTL_MS));
                }
                if m.len() < MISS_CAPACITY && self.generation.load(Ordering::SeqCst) == generation {
                    m.insert(channel_id.to_string(), now);
                }
            }
        }
    }

    /// Drop what this process remembers of a channel (after saving it here).
    pub fn forget(&self, channel_id: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut m) = self.known.write() {
            m.remove(channel_id);
        }
        if let Ok(mut m) = self.unknown.lock() {
            m.remove(channel_id);
        }
    }

    /// Database lookups made by [`known_channel`] so far (cache misses).
    pub fn database_lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    /// Unknown channel ids remembered now.
    pub fn remembered_misses(&self) -> usize {
        self.unknown.lock().map(|m| m.len()).unwrap_or(0)
    }
}

const TAKEN_JA: &str = "このチャネルはすでに別のアカウントで使われています。チャネルIDに誤りがないか、LINE Developers の Messaging API チャネルの［チャネル基本設定］で確認してください。誤りがない場合は、運営者にお問い合わせください。";
const BAD_ID_JA: &str = "チャネルIDの形式が正しくありません。LINE Developers の Messaging API チャネルの［チャネル基本設定］に表示されるチャネルID（数字）を入力してください。";
const INTERNAL_JA: &str = "チャネルを保存できませんでした。時間をおいてもう一度お試しください。解決しない場合は運営者にお問い合わせください。";

/// Why a channel was not saved: a stable code and a Japanese sentence for whoever saves.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// Another account holds this channel id; nothing was changed.
    #[error("[line.channel_taken] {}", TAKEN_JA)]
    Taken,
    #[error("[line.bad_channel_id] {}", BAD_ID_JA)]
    BadId,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ChannelError {
    pub fn code(&self) -> &'static str {
        match self {
            ChannelError::Taken => "line.channel_taken",
            ChannelError::BadId => "line.bad_channel_id",
            ChannelError::Internal(_) => "internal",
        }
    }

    pub fn message_ja(&self) -> &'static str {
        match self {
            ChannelError::Taken => TAKEN_JA,
            ChannelError::BadId => BAD_ID_JA,
            ChannelError::Internal(_) => INTERNAL_JA,
        }
    }
}

impl From<StoreError> for ChannelError {
    fn from(e: StoreError) -> Self {
        ChannelError::Internal(e.into())
    }
}

/// Channel ids the app can hold: LINE's are digits; anything else is never looked up, nor
/// remembered, so arbitrary paths cost neither a query nor memory.
fn plausible_id(channel_id: &str) -> bool {
    !channel_id.is_empty()
        && channel_id.len() <= MAX_CHANNEL_ID_LEN
        && channel_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Connect (or update) an instructor's Messaging API channel: the secret is sealed. A channel
/// another account holds is refused ([`ChannelError::Taken`]) and left as it was.
pub async fn save_channel(
    app: &App,
    account: AccountId,
    channel_id: &str,
    channel_secret: &str,
    bot_user_id: &str,
) -> Result<(), ChannelError> {
    if !plausible_id(channel_id) {
        return Err(ChannelError::BadId);
    }
    let now = app.now();
    let (key_id, sealed) = app.keys.seal(channel_secret, &secret_aad(account, &purpose(channel_id)));
    let mut tx = app.store.begin().await?;
    if !store::put_channel(&mut tx, account, channel_id, bot_user_id, now).await? {
        // Dropping the transaction rolls it back.
        return Err(ChannelError::Taken);
    }
    secrets::put(&mut tx, account, &purpose(channel_id), &key_id, &sealed, now).await?;
    tx.commit().await.map_err(StoreError::from)?;
    channels(app).forget(channel_id);
    Ok(())
}

/// One sealed secret per channel (an instructor may connect more than one).
fn purpose(channel_id: &str) -> String {
    format!("{CHANNEL_SECRET}:{channel_id}")
}

/// The channel's owner and secret, or `None` for a channel nobody connected. Answered from
/// this process's cache while fresh (see [`CHANNEL_TTL_MS`], [`MISS_TTL_MS`]).
pub async fn known_channel(app: &App, channel_id: &str) -> anyhow::Result<Option<KnownChannel>> {
    if !plausible_id(channel_id) {
        return Ok(None);
    }
    let now = app.now();
    if let Some(cached) = channels(app).get(channel_id, now) {
        return Ok(cached);
    }
    let generation = channels(app).generation.load(Ordering::SeqCst);
    channels(app).lookups.fetch_add(1, Ordering::Relaxed);
    let found = read_channel(app, channel_id).await?;
    channels(app).put(channel_id, found.clone(), generation, now);
    Ok(found)
}

async fn read_channel(app: &App, channel_id: &str) -> anyhow::Result<Option<KnownChannel>> {
    let mut c = app.store.read().await?;
    let Some(ch) = store::channel(&mut c, channel_id).await? else {
        return Ok(None);
    };
    let Some(sealed) = secrets::get(&mut c, ch.account_id, &purpose(channel_id)).await? else {
        return Ok(None);
    };
    let secret = app.keys.open(&sealed.key_id, &sealed.sealed, &secret_aad(ch.account_id, &purpose(channel_id)))?;
    Ok(Some(KnownChannel { account: ch.account_id, secret }))
}

/// A Messaging API client for one-off use (a CLI check): its limits are its own.
pub fn bare_client(config: &crate::config::Config) -> tsunagu_line::LineClient {
    let mut cfg = tsunagu_line::LineConfig::new(&config.line.api_base_url);
    // With `media.allow_http` (development, tests, the demo's sandbox) media URLs are http://;
    // LINE itself refuses them, which `serve` says at start.
    cfg.allow_http_media = config.media.allow_http;
    tsunagu_line::LineClient::new(cfg)
}

/// The process's Messaging API client: on PostgreSQL its per-channel limits are shared with
/// every process on the database ([`crate::limits`]).
pub fn client(config: &crate::config::Config, store: &tsunagu_store::Store) -> tsunagu_line::LineClient {
    match crate::limits::rate_budget(store) {
        Some(rate) => bare_client(config).with_rate_budget(rate),
        None => bare_client(config),
    }
}

/// This installation's webhook URL for a channel (what LINE Developers must show).
pub fn webhook_url(config: &crate::config::Config, channel_id: &str) -> String {
    format!("{}/line/webhook/{channel_id}", config.http.public_url.trim_end_matches('/'))
}

pub use jobs::job_kinds;

/// What the LINE feature keeps in the process.
#[derive(Default)]
pub struct LineState {
    /// Channels whose secret this process has opened (webhook signature checks).
    pub channels: ChannelCache,
    /// The webhook writer (started on the first webhook, restarted if it ended).
    pub(crate) intake: std::sync::Mutex<Option<std::sync::Arc<webhook::Intake>>>,
}

/// This process's cache of LINE channels.
pub fn channels(app: &App) -> &ChannelCache {
    &app.features.get::<LineState>().channels
}

/// LINE's webhooks for instructors' channels, and 設定 > 公式LINE連携.
pub fn routes() -> axum::Router<crate::app::SharedApp> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/line/webhook/{channel_id}", post(webhook::receive))
        .route("/line/callback", get(login::callback))
        .route("/settings/line", get(link::list))
        .route("/settings/line/new", get(link::new_form).post(link::create))
        .route("/settings/line/{id}", get(link::edit_form).post(link::update))
        .route("/settings/line/{id}/delete", post(link::delete))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misses_are_bounded_and_expire() {
        let cache = ChannelCache::default();
        let g = cache.generation.load(Ordering::SeqCst);
        for i in 0..MISS_CAPACITY + 500 {
            cache.put(&format!("{i}"), None, g, 1_000);
        }
        assert_eq!(cache.remembered_misses(), MISS_CAPACITY, "random ids cannot grow it further");
        assert!(cache.get("0", 1_000 + MISS_TTL_MS - 1).is_some_and(|c| c.is_none()), "a remembered miss");
        assert!(cache.get("0", 1_000 + MISS_TTL_MS).is_none(), "expired: ask the database");
        // Once the old misses have expired, new ones replace them.
        cache.put("new", None, g, 1_000 + MISS_TTL_MS);
        assert_eq!(cache.remembered_misses(), 1);
        assert!(cache.get("new", 1_000 + MISS_TTL_MS).is_some());
    }

    #[test]
    fn a_lookup_older_than_a_save_is_not_kept() {
        let cache = ChannelCache::default();
        let known = KnownChannel { account: AccountId(1), secret: "old".into() };
        let g = cache.generation.load(Ordering::SeqCst);
        // The channel is saved here while a lookup that read the old secret is under way.
        cache.forget("2000000001");
        cache.put("2000000001", Some(known.clone()), g, 0);
        assert!(cache.get("2000000001", 0).is_none());
        cache.put("2000000001", Some(known), cache.generation.load(Ordering::SeqCst), 0);
        assert!(cache.get("2000000001", CHANNEL_TTL_MS - 1).is_some_and(|c| c.is_some()));
        assert!(cache.get("2000000001", CHANNEL_TTL_MS).is_none(), "expired after the bound");
        assert!(cache.get("2000000001", -1).is_none(), "a clock that went back does not extend it");
    }
}
