//! Building the application from config, binding the listener first, and running the web
//! server and job workers until a shutdown signal.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tsunagu_store::{Backend, Store, StoreOptions};

use crate::app::{App, SharedApp};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::crypto::{Keyring, MasterKey};
use crate::jobs::worker::Worker;

pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let opts = StoreOptions { max_connections: config.database.max_connections.max(2), ..StoreOptions::default() };
    Store::open(&config.database.url, &opts)
        .await
        .with_context(|| format!("cannot open the database {}", tsunagu_store::redact_url(&config.database.url)))
}

/// The master keyring: inline from config, or from the key file. On SQLite (one machine) a
/// missing key file is generated with mode 0600; on PostgreSQL every instance must share
/// one key, so a missing key is an error.
pub fn load_keyring(config: &Config, allow_generate: bool) -> anyhow::Result<Keyring> {
    if !config.secrets.master_key.is_empty() {
        let text = config.secrets.master_key.expose().replace(',', "\n");
        return Keyring::parse(&text).context("secrets.master_key must be base64 of 32 random bytes");
    }
    let path = config.master_key_path();
    if path.exists() {
        warn_if_readable_by_others(&path);
        return Keyring::load_file(&path).with_context(|| format!("cannot read the master key {}", path.display()));
    }
    if !allow_generate {
        bail!(
            "no master key at {}: set secrets.master_key_file (the same file on every instance) or secrets.master_key",
            path.display()
        );
    }
    let ring = Keyring::new(MasterKey::generate());
    ring.write_file(&path).with_context(|| format!("cannot write a new master key to {}", path.display()))?;
    tracing::warn!(path = %path.display(), key_id = ring.current().id(), "generated a new master key (mode 0600); back it up: without it, stored credentials cannot be read");
    eprintln!(
        "新しいマスターキーを {} に作成しました（権限 0600）。バックアップしてください。\nGenerated a new master key at {} (mode 0600). Back it up.",
        path.display(),
        path.display()
    );
    Ok(ring)
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "master key file is readable by other users; chmod 600 it");
        }
    }
}

pub async fn build_app(config: Config, clock: SharedClock) -> anyhow::Result<SharedApp> {
    let store = open_store(&config).await?;
    let keys = load_keyring(&config, store.backend() == Backend::Sqlite)?;
    tracing::info!(
        backend = store.backend().name(),
        database = %tsunagu_store::redact_url(&config.database.url),
        key_id = keys.current().id(),
        "store ready"
    );
    Ok(Arc::new(App::new(config, store, clock, keys, crate::features::state())?))
}

pub struct Server {
    app: SharedApp,
    listener: TcpListener,
}

impl Server {
    /// Bind first, so a port clash is reported before anything else starts.
    pub async fn bind(app: SharedApp) -> anyhow::Result<Server> {
        crate::media::warn_if_tools_missing(&crate::media::library::tools(&app)).await;
        if let Err(e) = crate::media::library::clean_intake(&app, crate::media::library::INTAKE_STALE).await {
            tracing::warn!(error = %e, "cleaning the media intake failed");
        }
        let addr = &app.config.http.listen;
        let listener = TcpListener::bind(addr).await.with_context(|| {
            format!(
                "{addr} で待ち受けできません。ほかのプログラムが使っていないか確認するか、別のアドレスを指定してください（demo: --listen 127.0.0.1:9090、serve: http.listen / TSUNAGU_HTTP__LISTEN） / cannot listen on {addr}: is another program using it?"
            )
        })?;
        Ok(Server { app, listener })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    pub fn app(&self) -> &SharedApp {
        &self.app
    }

    /// Serve until `shutdown`; in-flight requests finish, running jobs get their grace period.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let app = self.app.clone();
        let worker = app.config.jobs.enabled.then(|| tokio::spawn(Worker::new(app.clone()).run(shutdown.clone())));
        let checkpoints = tokio::spawn(checkpoint_in_the_background(app.clone(), shutdown.clone()));
        let router = crate::web::router(app.clone(), crate::features::routes());
        tracing::info!(addr = %self.local_addr(), mail = app.mailer.kind(), "listening");
        let s = shutdown.clone();
        axum::serve(self.listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move { s.cancelled().await })
            .await
            .context("http server failed")?;
        if let Some(w) = worker {
            let _ = w.await;
        }
        let _ = checkpoints.await;
        app.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Every 250 ms, SQLite's write-ahead log is copied into the database here, off the writer's
/// path.
async fn checkpoint_in_the_background(app: SharedApp, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
        }
        if let Err(e) = app.store.checkpoint().await {
            tracing::debug!(error = %e, "background checkpoint failed; SQLite's own checkpoint remains");
        }
    }
}

/// A token cancelled on SIGTERM or SIGINT (Ctrl+C).
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    t.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        tracing::info!("shutdown requested; finishing in-flight work");
        t.cancel();
    });
    token
}

pub fn system_clock() -> SharedClock {
    Arc::new(SystemClock)
}
