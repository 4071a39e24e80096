//! Stateful stand-ins for the services Tsunagu cannot reach from here: Zoom ([`zoom`]), LINE
//! ([`line`]) and Stripe ([`stripe`]). They speak only HTTP, follow the official schemas and
//! `../shared/specs/*/NOTES.md` (never our clients), and are used by tests, benchmarks and
//! `tsunagu demo`.

#![recursion_limit = "256"]

mod common;
pub mod line;
pub mod stripe;
pub mod zoom;

use std::net::SocketAddr;

/// Serve `router` on a loopback port chosen by the OS; returns the base URL.
pub async fn serve(router: axum::Router) -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((format!("http://{addr}"), task))
}

/// A sandbox served from its own thread and runtime, as a real service runs on its own machine:
/// load tests use it so that the client's busy runtime cannot delay the sandbox's clock (which
/// would make requests sent evenly look bunched together on arrival). Stops when dropped.
pub struct Detached {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Detached {
    pub fn serve(router: axum::Router) -> std::io::Result<Detached> {
        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        listener.set_nonblocking(true)?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("sandbox".into()).spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("sandbox runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
        })?;
        Ok(Detached { base, stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Graceful shutdown waits for open connections; do not block the dropping thread on it.
        drop(self.thread.take());
    }
}
