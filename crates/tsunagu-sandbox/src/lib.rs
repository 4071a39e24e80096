//! Stateful stand-ins for the services Tsunagu cannot reach from here: Zoom ([`zoom`]) and LINE
//! ([`line`]). They speak only HTTP, follow the official schemas and
//! `../shared/specs/*/NOTES.md` (never our clients), and are used by tests, benchmarks and
//! `tsunagu demo`.

pub mod line;
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
