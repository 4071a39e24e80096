//! Configuration: a TOML file (`--config`) overlaid by `TSUNAGU_SECTION__KEY` environment
//! variables. Unknown sections or keys are errors that name the key. Secrets are wrapped in
//! [`Secret`], whose `Debug` never shows the value.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data: DataConfig,
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    pub accounts: AccountsConfig,
    pub mail: MailConfig,
    pub secrets: SecretsConfig,
    pub jobs: JobsConfig,
    pub log: LogConfig,
    pub zoom: ZoomConfig,
    pub line: LineConfig,
    pub stripe: StripeConfig,
    pub media: MediaConfig,
    pub retention: RetentionConfig,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    pub dir: PathBuf,
}

#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub url: String,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: String,
    /// Student-facing base URL.
    pub public_url: String,
    /// Console (organizer/instructor-facing) base URL; may equal `public_url`.
    pub manager_url: String,
    /// Take the client address from `X-Forwarded-For` (only behind a proxy you run).
    pub trust_forwarded_for: bool,
    pub session_days: u32,
    /// When set, `/metrics` requires `Authorization: Bearer <token>`.
    pub metrics_token: Secret,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    pub allow_signup: bool,
    pub default_time_zone: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    pub from: String,
    /// Empty: mails are kept in the database and listed in the console (送信済みメール).
    /// `smtp://host:587?tls=required` (STARTTLS), `smtps://user:pass@host:465` (TLS).
    pub smtp_url: Secret,
    pub timeout_seconds: u64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// Base64 of 32 random bytes. Prefer `master_key_file`.
    pub master_key: Secret,
    /// Default: `<data.dir>/master.key`.
    pub master_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Run workers in this process.
    pub enabled: bool,
    pub concurrency: usize,
    pub lease_seconds: u64,
    pub poll_interval_ms: u64,
    pub max_attempts: i64,
    pub backoff_base_seconds: u64,
    pub shutdown_grace_seconds: u64,
    /// Per job kind, seconds after which a running handler is stopped and the job retried
    /// (overrides the kind's own deadline).
    pub deadline_seconds: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: String,
    /// A `tracing` filter such as `info` or `tsunagu=debug,info`.
    pub level: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ZoomConfig {
    pub api_base_url: String,
    pub oauth_base_url: String,
    /// The Zoom plan whose rate limits the client keeps to: free, pro, business (Business and
    /// above: Education, Enterprise, Partner).
    pub plan: String,
    /// Seconds before a Zoom request is given up (then retried where that is safe).
    pub timeout_seconds: u64,
    /// Tsunagu's own Zoom OAuth app (Marketplace), letting organizers connect by logging in to
    /// Zoom instead of handing over Server-to-Server secrets. Empty: only S2S is offered. The
    /// app's redirect URL must be `{http.manager_url}/zoom/oauth/callback`.
    pub oauth_client_id: String,
    pub oauth_client_secret: Secret,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LineConfig {
    pub api_base_url: String,
    pub data_api_base_url: String,
    pub access_base_url: String,
    /// A channel's webhook events are handled this many milliseconds after the first of them
    /// arrived, together with those that came meanwhile.
    pub events_delay_ms: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StripeConfig {
    pub api_base_url: String,
    /// Seconds before a Stripe request is given up (then sent again with its idempotency key).
    pub timeout_seconds: u64,
}

impl Default for StripeConfig {
    fn default() -> Self {
        StripeConfig { api_base_url: "https://api.stripe.com".into(), timeout_seconds: 30 }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// `local` (files under `local_dir`) or `s3` (any S3-compatible server).
    pub storage: String,
    /// Default: `<data.dir>/media`.
    pub local_dir: Option<PathBuf>,
    pub s3_bucket: String,
    /// Empty: AWS itself. For MinIO-like servers, their URL (and usually `s3_path_style`).
    pub s3_endpoint: String,
    pub s3_region: String,
    pub s3_access_key_id: String,
    pub s3_secret_access_key: Secret,
    /// `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key`.
    pub s3_path_style: bool,
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
    /// Serve media under a non-HTTPS `http.public_url`. LINE refuses such URLs: only for
    /// development and tests (`tsunagu demo` on loopback allows it by itself).
    pub allow_http: bool,
}

/// How long data that holds people's messages and addresses is kept (purged hourly).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// LINE webhook events, counted from when they were handled (unhandled ones are kept).
    pub line_events_days: u32,
    /// Mails sent, stored or failed for good, counted from when they were created (queued
    /// ones are kept).
    pub mails_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { line_events_days: 30, mails_days: 365 }
    }
}

impl RetentionConfig {
    pub fn line_events_ms(&self) -> i64 {
        i64::from(self.line_events_days) * DAY_MS
    }

    pub fn mails_ms(&self) -> i64 {
        i64::from(self.mails_days) * DAY_MS
    }
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            storage: "local".into(),
            local_dir: None,
            s3_bucket: String::new(),
            s3_endpoint: String::new(),
            s3_region: "ap-northeast-1".into(),
            s3_access_key_id: String::new(),
            s3_secret_access_key: Secret::default(),
            s3_path_style: false,
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            allow_http: false,
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig { dir: PathBuf::from("./data") }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: "sqlite://./data/tsunagu.db".into(), max_connections: 10 }
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &tsunagu_store::redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".into(),
            public_url: "http://127.0.0.1:8080".into(),
            manager_url: "http://127.0.0.1:8080".into(),
            trust_forwarded_for: false,
            session_days: 14,
            metrics_token: Secret::default(),
        }
    }
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig { allow_signup: true, default_time_zone: "Asia/Tokyo".into() }
    }
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            from: "Tsunagu <no-reply@tsunagu.invalid>".into(),
            smtp_url: Secret::default(),
            timeout_seconds: 30,
        }
    }
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            enabled: true,
            concurrency: 4,
            lease_seconds: 60,
            poll_interval_ms: 500,
            max_attempts: 8,
            backoff_base_seconds: 5,
            shutdown_grace_seconds: 20,
            deadline_seconds: Default::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: "human".into(), level: "info".into() }
    }
}

impl Default for ZoomConfig {
    fn default() -> Self {
        ZoomConfig {
            api_base_url: "https://api.zoom.us/v2".into(),
            oauth_base_url: "https://zoom.us".into(),
            plan: "pro".into(),
            timeout_seconds: 30,
            oauth_client_id: String::new(),
            oauth_client_secret: Secret::default(),
        }
    }
}

impl Default for LineConfig {
    fn default() -> Self {
        LineConfig {
            api_base_url: "https://api.line.me".into(),
            data_api_base_url: "https://api-data.line.me".into(),
            access_base_url: "https://access.line.me".into(),
            events_delay_ms: 200,
        }
    }
}

/// A configuration value that must never be printed.
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() { f.write_str("\"\"") } else { f.write_str("[redacted]") }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// File (optional) then environment, then validation.
    pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let (mut table, origin) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.into(), source })?;
                let table: toml::Table = toml::from_str(&text)
                    .map_err(|e| ConfigError::Parse { path: p.display().to_string(), message: e.to_string() })?;
                (table, p.display().to_string())
            }
            None => (toml::Table::new(), "(defaults)".to_string()),
        };
        let mut env_keys: BTreeMap<String, String> = BTreeMap::new();
        for (var, value) in env {
            let Some(rest) = var.strip_prefix("TSUNAGU_") else { continue };
            let Some((section, key)) = rest.split_once("__") else {
                // TSUNAGU_TEST_* and the like belong to tools, not to this config.
                continue;
            };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            if key.contains("__") || section.is_empty() || key.is_empty() {
                return Err(ConfigError::Env { var, message: "expected TSUNAGU_SECTION__KEY".into() });
            }
            let entry = table.entry(section.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(t) = entry else {
                return Err(ConfigError::Env { var, message: format!("[{section}] is not a section") });
            };
            t.insert(key.clone(), env_value(&value));
            env_keys.insert(format!("{section}.{key}"), var);
        }
        let config: Config = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| {
            let message = e.message().to_string();
            // Name the environment variable when the bad key came from one.
            let from_env = env_keys.iter().find(|(k, _)| message.contains(k.rsplit('.').next().unwrap_or(k)));
            match from_env {
                Some((_, var)) => ConfigError::Env { var: var.clone(), message },
                None => ConfigError::Parse { path: origin.clone(), message },
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(self.log.format.as_str(), "human" | "json") {
            return Err(ConfigError::Invalid(format!(
                "log.format must be \"human\" or \"json\", not {:?}",
                self.log.format
            )));
        }
        tsunagu_store::Backend::from_url(&self.database.url).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        for (name, url) in [("http.public_url", &self.http.public_url), ("http.manager_url", &self.http.manager_url)] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!("{name} must start with http:// or https://")));
            }
        }
        if self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "http.listen must be an address and port such as 127.0.0.1:8080, not {:?}",
                self.http.listen
            )));
        }
        if tsunagu_zoom::limits::ZoomPlan::parse(&self.zoom.plan).is_none() {
            return Err(ConfigError::Invalid(format!(
                "zoom.plan must be free, pro or business, not {:?}",
                self.zoom.plan
            )));
        }
        if self.zoom.oauth_client_id.is_empty() != self.zoom.oauth_client_secret.is_empty() {
            return Err(ConfigError::Invalid(
                "zoom.oauth_client_id and zoom.oauth_client_secret go together: set both or neither".into(),
            ));
        }
        if self.zoom.timeout_seconds == 0 {
            return Err(ConfigError::Invalid("zoom.timeout_seconds must be at least 1".into()));
        }
        match self.media.storage.as_str() {
            "local" => {}
            "s3" if self.media.s3_bucket.is_empty() => {
                return Err(ConfigError::Invalid("media.storage = \"s3\" needs media.s3_bucket".into()));
            }
            "s3" => {}
            other => {
                return Err(ConfigError::Invalid(format!("media.storage must be \"local\" or \"s3\", not {other:?}")));
            }
        }
        if self.retention.line_events_days == 0 || self.retention.mails_days == 0 {
            return Err(ConfigError::Invalid(
                "retention.line_events_days and retention.mails_days must be at least 1".into(),
            ));
        }
        if self.jobs.concurrency == 0 || self.jobs.lease_seconds == 0 {
            return Err(ConfigError::Invalid("jobs.concurrency and jobs.lease_seconds must be at least 1".into()));
        }
        Ok(())
    }

    pub fn master_key_path(&self) -> PathBuf {
        self.secrets.master_key_file.clone().unwrap_or_else(|| self.data.dir.join("master.key"))
    }

    pub fn manager_is_https(&self) -> bool {
        self.http.manager_url.starts_with("https://")
    }
}

/// An environment value as TOML when it parses as a scalar (`4`, `true`), else a string.
fn env_value(raw: &str) -> toml::Value {
    let probe = format!("v = {raw}");
    if let Ok(t) = toml::from_str::<toml::Table>(&probe)
        && let Some(v) = t.get("v")
        && !matches!(v, toml::Value::Table(_))
    {
        return v.clone();
    }
    toml::Value::String(raw.to_string())
}

/// The commented example printed by `tsunagu config example`.
pub const EXAMPLE: &str = r#"# Tsunagu configuration. Every key may also be set by environment variable
# TSUNAGU_SECTION__KEY, e.g. TSUNAGU_DATABASE__URL. Unknown keys are an error.

[data]
# Where the SQLite database, the master key and local media live.
dir = "./data"

[database]
# sqlite://path (created on first start) or postgres://user:pass@host/db
url = "sqlite://./data/tsunagu.db"
max_connections = 10

[http]
listen = "127.0.0.1:8080"
# Student-facing base URL (LINE Login callback, course pages).
public_url = "http://127.0.0.1:8080"
# Console base URL for organizers and instructors; may equal public_url.
manager_url = "http://127.0.0.1:8080"
# Use X-Forwarded-For for the client address (only behind your own reverse proxy).
trust_forwarded_for = false
session_days = 14
# When set, GET /metrics requires "Authorization: Bearer <token>".
metrics_token = ""

[accounts]
allow_signup = true
default_time_zone = "Asia/Tokyo"

[mail]
from = "Tsunagu <no-reply@tsunagu.invalid>"
# Empty: mails are kept in the database and listed under 送信済みメール.
# smtp://user:pass@host:587?tls=required (STARTTLS) or smtps://user:pass@host:465 (TLS).
smtp_url = ""
timeout_seconds = 30

[secrets]
# Master key for credentials stored at rest: base64 of 32 random bytes.
# Leave empty to use master_key_file (default <data.dir>/master.key, generated on the
# first start on SQLite). Several instances on PostgreSQL must share one key.
master_key = ""
# master_key_file = "/etc/tsunagu/master.key"

[jobs]
# Run background workers in this process.
enabled = true
concurrency = 4
# A job claimed by a process that died is run again after its lease.
lease_seconds = 60
poll_interval_ms = 500
max_attempts = 8
backoff_base_seconds = 5
# On SIGTERM, running jobs get this long to finish; the rest are handed back.
shutdown_grace_seconds = 20
# Each job kind has a deadline after which its handler is stopped and the job retried
# (mail.send 10 min, line.events 10 min, media.convert 3 h, ...). Override per kind:
# [jobs.deadline_seconds]
# "mail.send" = 300

[log]
# human or json
format = "human"
level = "info"

[zoom]
api_base_url = "https://api.zoom.us/v2"
oauth_base_url = "https://zoom.us"
# The organizers' Zoom plan, for the rate limits Tsunagu keeps to: free, pro or business
# (Business and above). Pro's figures: Light 30/s, Medium 20/s, Heavy 10/s.
plan = "pro"
timeout_seconds = 30
# Tsunagu's Zoom OAuth app (optional). Its redirect URL in the Marketplace must be
# <http.manager_url>/zoom/oauth/callback. Prefer TSUNAGU_ZOOM__OAUTH_CLIENT_SECRET for the secret.
oauth_client_id = ""
oauth_client_secret = ""

[line]
api_base_url = "https://api.line.me"
data_api_base_url = "https://api-data.line.me"
access_base_url = "https://access.line.me"
# Webhook events of a channel are handled this long after the first of them arrived, together
# with those that came meanwhile (a few hundred at a time on a busy channel).
events_delay_ms = 200

[stripe]
# Each organizer pastes their own key in 基本設定 > 決済（Stripe）; Tsunagu creates its webhook
# endpoint there. Requests pin Stripe-Version 2020-08-27.
api_base_url = "https://api.stripe.com"
timeout_seconds = 30

[media]
# Where step-message media is kept: "local" (local_dir, default <data.dir>/media) or "s3"
# (AWS or any S3-compatible server). Media is served to LINE at unguessable URLs under
# http.public_url, which must be HTTPS (LINE refuses anything else).
storage = "local"
# local_dir = "/var/lib/tsunagu/media"
s3_bucket = ""
# Empty for AWS; e.g. "http://127.0.0.1:9000" for MinIO (then s3_path_style = true).
s3_endpoint = ""
s3_region = "ap-northeast-1"
s3_access_key_id = ""
# Prefer TSUNAGU_MEDIA__S3_SECRET_ACCESS_KEY for the secret.
s3_secret_access_key = ""
s3_path_style = false
ffmpeg = "ffmpeg"
ffprobe = "ffprobe"
# Development and tests only: allow a non-HTTPS public_url (LINE will not fetch from it).
allow_http = false

[retention]
# Days a handled LINE webhook event (it holds the user's message) is kept; unhandled events are
# never purged. A stored event also recognises LINE's redelivery of it, so keep a few days at least.
line_events_days = 30
# Days a sent, stored or failed mail is kept, from its creation; queued mails are never purged.
mails_days = 365
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn example_parses_to_the_defaults() {
        let parsed: Config = toml::from_str(EXAMPLE).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn env_overlays_with_types() {
        let c = Config::load(
            None,
            env(&[
                ("TSUNAGU_DATABASE__URL", "postgres://u:pw@localhost/db"),
                ("TSUNAGU_JOBS__CONCURRENCY", "9"),
                ("TSUNAGU_HTTP__TRUST_FORWARDED_FOR", "true"),
                ("TSUNAGU_ZOOM__API_BASE_URL", "http://127.0.0.1:9/v2"),
                ("TSUNAGU_LINE__ACCESS_BASE_URL", "http://127.0.0.1:9"),
                ("TSUNAGU_TEST_PG_URL", "ignored"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.database.url, "postgres://u:pw@localhost/db");
        assert_eq!(c.jobs.concurrency, 9);
        assert!(c.http.trust_forwarded_for);
        assert_eq!(c.zoom.api_base_url, "http://127.0.0.1:9/v2");
        assert_eq!(c.line.access_base_url, "http://127.0.0.1:9");
        assert_eq!(c.line.data_api_base_url, "https://api-data.line.me");
    }

    #[test]
    fn retention_days_are_configurable() {
        let c = Config::load(
            None,
            env(&[("TSUNAGU_RETENTION__LINE_EVENTS_DAYS", "7"), ("TSUNAGU_RETENTION__MAILS_DAYS", "90")]),
        )
        .unwrap();
        assert_eq!((c.retention.line_events_days, c.retention.mails_days), (7, 90));
        assert_eq!(c.retention.line_events_ms(), 7 * 24 * 60 * 60 * 1000);
        let d = Config::default().retention;
        assert_eq!((d.line_events_days, d.mails_days), (30, 365));
        let err = Config::load(None, env(&[("TSUNAGU_RETENTION__MAIL_DAYS", "9")])).unwrap_err().to_string();
        assert!(err.contains("mail_days"), "{err}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::load(None, env(&[("TSUNAGU_DATABASE__URLL", "x")])).unwrap_err().to_string();
        assert!(err.contains("TSUNAGU_DATABASE__URLL") && err.contains("urll"), "{err}");
        let err = Config::load(None, env(&[("TSUNAGU_NOPE__X", "1")])).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
        let dir = std::env::temp_dir().join(format!("tsunagu-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "[http]\nlisten = \"0.0.0.0:1\"\nlistne = 3\n").unwrap();
        let err = Config::load(Some(&file), Vec::new()).unwrap_err().to_string();
        assert!(err.contains("listne"), "{err}");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = Config::load(
            None,
            env(&[
                ("TSUNAGU_MAIL__SMTP_URL", "smtps://user:hunter2pass@mail.example.com"),
                ("TSUNAGU_SECRETS__MASTER_KEY", "c2VjcmV0LW1hc3Rlci1rZXk="),
                ("TSUNAGU_DATABASE__URL", "postgres://app:dbpassword@db/tsunagu"),
            ]),
        )
        .unwrap();
        let dump = format!("{c:?}");
        assert!(!dump.contains("hunter2pass") && !dump.contains("c2VjcmV0") && !dump.contains("dbpassword"), "{dump}");
        assert!(dump.contains("[redacted]"));
    }

    #[test]
    fn bad_values_are_explained() {
        let err = Config::load(None, env(&[("TSUNAGU_HTTP__LISTEN", "notanaddr")])).unwrap_err().to_string();
        assert!(err.contains("http.listen") && err.contains("127.0.0.1:8080"), "{err}");
        let err = Config::load(None, env(&[("TSUNAGU_LOG__FORMAT", "xml")])).unwrap_err().to_string();
        assert!(err.contains("log.format"), "{err}");
        let err = Config::load(None, env(&[("TSUNAGU_DATABASE__URL", "mysql://x")])).unwrap_err().to_string();
        assert!(err.contains("sqlite://"), "{err}");
        let err = Config::load(None, env(&[("TSUNAGU_RETENTION__MAILS_DAYS", "0")])).unwrap_err().to_string();
        assert!(err.contains("retention.mails_days"), "{err}");
    }
}
