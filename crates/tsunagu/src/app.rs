//! The services every handler and job uses, built once from config.

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
    /// Mails the SMTP server accepted and whose record is still being written.
    pub mail_accepted: crate::mail::send::Accepted,
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
    /// LINE channels whose secret this process has opened (webhook signature checks).
    pub line_channels: crate::line::ChannelCache,
    /// The LINE webhook writer (started on the first webhook, restarted if it ended).
    pub line_intake: std::sync::Mutex<Option<Arc<crate::line::webhook::Intake>>>,
    /// Where step-message media is stored and served from.
    pub media_store: crate::media::store::MediaStore,
}

pub type SharedApp = Arc<App>;

impl App {
    pub fn new(config: Config, store: Store, clock: SharedClock, keys: Keyring) -> anyhow::Result<App> {
        let mailer = Mailer::from_config(&config.mail)?;
        let csrf_keys = keys.derive("csrf");
        let zoom = crate::zoom::client(&config, store.clone(), keys.clone(), clock.clone());
        let line = crate::line::client(&config, &store);
        let media_store = crate::media::store::MediaStore::from_config(&config)?;
        Ok(App {
            config,
            store,
            clock,
            keys,
            metrics: Metrics::default(),
            mailer,
            mail_accepted: Default::default(),
            csrf_keys,
            job_wakeup: Notify::new(),
            zoom,
            line,
            line_channels: Default::default(),
            line_intake: Default::default(),
            media_store,
        })
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }
}
