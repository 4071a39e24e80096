//! The services every handler and job uses, built once from config. Features keep their own
//! in-process state in [`FeatureState`], handed in at startup (`crate::features::state`), so
//! this file names no feature.

use std::sync::Arc;

use tokio::sync::Notify;
use tsunagu_store::Store;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::crypto::Keyring;
use crate::mail::Mailer;
use crate::metrics::Metrics;

pub struct App {
    pub config: Config,
    pub store: Store,
    pub clock: SharedClock,
    pub keys: Keyring,
    pub metrics: Metrics,
    pub mailer: Mailer,
    /// Signing keys for CSRF tokens, derived from the master keys (current first).
    pub csrf_keys: Vec<[u8; 32]>,
    /// Wakes this process's workers when it enqueues a job.
    pub job_wakeup: Notify,
    /// Zoom: tokens shared by every task of this process; rate limits and daily counts kept
    /// in the database ([`crate::limits`]).
    pub zoom: tsunagu_zoom::ZoomClient,
    /// LINE Messaging API: channel tokens shared by every task of this process; rate limits
    /// shared through the database on PostgreSQL.
    pub line: tsunagu_line::LineClient,
    /// Stripe: each organizer's own key per call; rate limits shared through the database on
    /// PostgreSQL.
    pub stripe: tsunagu_stripe::StripeClient,
    /// Where step-message media is stored and served from.
    pub media_store: crate::media::store::MediaStore,
    /// Each feature's in-process state (caches, writers), by type.
    pub features: FeatureState,
}

/// A map from a type to the one value of it: each feature puts its state here at startup and
/// finds it with [`FeatureState::get`].
#[derive(Default)]
pub struct FeatureState {
    map: std::collections::HashMap<std::any::TypeId, Box<dyn std::any::Any + Send + Sync>>,
}

impl FeatureState {
    pub fn with<T: std::any::Any + Send + Sync>(mut self, value: T) -> FeatureState {
        self.map.insert(std::any::TypeId::of::<T>(), Box::new(value));
        self
    }

    /// The feature state of type `T`. Every feature's state is registered at startup, so a
    /// missing one is a programming error.
    pub fn get<T: std::any::Any + Send + Sync>(&self) -> &T {
        self.map
            .get(&std::any::TypeId::of::<T>())
            .and_then(|b| b.downcast_ref::<T>())
            .unwrap_or_else(|| panic!("feature state {} was not registered at startup", std::any::type_name::<T>()))
    }
}

pub type SharedApp = Arc<App>;

impl App {
    pub fn new(
        config: Config,
        store: Store,
        clock: SharedClock,
        keys: Keyring,
        features: FeatureState,
    ) -> anyhow::Result<App> {
        let mailer = Mailer::from_config(&config.mail)?;
        let csrf_keys = keys.derive("csrf");
        let zoom = crate::zoom::client(&config, store.clone(), keys.clone(), clock.clone());
        let line = crate::line::client(&config, &store);
        let stripe = crate::payments::client(&config, &store);
        let media_store = crate::media::store::MediaStore::from_config(&config)?;
        Ok(App {
            config,
            store,
            clock,
            keys,
            metrics: Metrics::default(),
            mailer,
            csrf_keys,
            job_wakeup: Notify::new(),
            zoom,
            line,
            stripe,
            media_store,
            features,
        })
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The account's sealed secret for `purpose`, opened; `None` when none is stored. Read on a
    /// read-only connection, so it never waits for writers.
    pub async fn open_secret(&self, account: tsunagu_core::AccountId, purpose: &str) -> anyhow::Result<Option<String>> {
        let sealed = {
            let mut c = self.store.read().await?;
            tsunagu_store::secrets::get(&mut c, account, purpose).await?
        };
        let Some(sealed) = sealed else { return Ok(None) };
        let aad = crate::crypto::secret_aad(account, purpose);
        let plain = self
            .keys
            .open(&sealed.key_id, &sealed.sealed, &aad)
            .map_err(|e| anyhow::anyhow!("cannot open the sealed {purpose}: {e}"))?;
        Ok(Some(plain))
    }
}
