//! Logging: human-readable by default, JSON lines with `log.format = "json"`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

use crate::config::LogConfig;

/// Install the global subscriber once; later calls (tests) are ignored.
pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_env("TSUNAGU_LOG").unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    let writer = std::io::stderr.with_max_level(tracing::Level::TRACE);
    let result = if cfg.format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .with_writer(writer)
            .try_init()
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(writer)
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
    let _ = result;
}
