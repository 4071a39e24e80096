//! A LINE sandbox with one official account (and its Login channel), some users, and a client.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tsunagu_line::client::TokenKind;
use tsunagu_line::{Channel, LineClient, LineConfig};
use tsunagu_sandbox::line::{LineChannelSpec, LineSandbox, LoginChannelSpec, SimUser};

pub const CHANNEL: &str = "2000000001";
pub const SECRET: &str = "channel-secret-1";
pub const LOGIN: &str = "1600000001";
pub const LOGIN_SECRET: &str = "login-secret-1";
pub const REDIRECT: &str = "http://127.0.0.1:9/line/callback";

pub struct Line {
    pub sb: LineSandbox,
    pub base: String,
    pub client: Arc<LineClient>,
    pub ch: Channel,
    pub now: Arc<AtomicI64>,
    _detached: Option<tsunagu_sandbox::Detached>,
}

pub fn channel() -> Channel {
    Channel { id: CHANNEL.into(), secret: SECRET.into(), token_kind: TokenKind::Stateless }
}

impl Line {
    pub async fn start(quota: Option<i64>, tune: impl FnOnce(&mut LineConfig)) -> Line {
        Self::start_with(quota, false, tune).await
    }

    /// `detached`: the sandbox runs on its own thread (load tests), see [`tsunagu_sandbox::Detached`].
    pub async fn start_with(quota: Option<i64>, detached: bool, tune: impl FnOnce(&mut LineConfig)) -> Line {
        let sb = LineSandbox::new();
        sb.add_channel(LineChannelSpec {
            channel_id: CHANNEL.into(),
            channel_secret: SECRET.into(),
            bot_user_id: format!("U{}", "b".repeat(32)),
            basic_id: "@tsunagu".into(),
            display_name: "つなぐ講座".into(),
            monthly_quota: quota,
            login: Some(LoginChannelSpec {
                channel_id: LOGIN.into(),
                channel_secret: LOGIN_SECRET.into(),
                redirect_uris: vec![REDIRECT.into()],
            }),
        });
        let (base, _detached) = if detached {
            let d = tsunagu_sandbox::Detached::serve(sb.router()).expect("sandbox starts");
            (d.base.clone(), Some(d))
        } else {
            (tsunagu_sandbox::serve(sb.router()).await.expect("sandbox starts").0, None)
        };
        let mut cfg = LineConfig::new(&base);
        cfg.timeout = Duration::from_secs(5);
        cfg.backoff_base = Duration::from_millis(20);
        tune(&mut cfg);
        let now = Arc::new(AtomicI64::new(jiff::Timestamp::now().as_millisecond()));
        let clock = now.clone();
        let client = Arc::new(LineClient::new(cfg).with_clock(Arc::new(move || clock.load(Ordering::SeqCst))));
        Line { sb, base, client, ch: channel(), now, _detached }
    }

    /// A user who is a friend of the official account.
    pub fn friend(&self, name: &str) -> String {
        let id = self.sb.new_user_id();
        self.sb.add_user(SimUser { user_id: id.clone(), display_name: name.into() });
        self.sb.set_friend(CHANNEL, &id);
        id
    }

    /// A user who never added the account.
    pub fn stranger(&self, name: &str) -> String {
        let id = self.sb.new_user_id();
        self.sb.add_user(SimUser { user_id: id.clone(), display_name: name.into() });
        id
    }

    /// Every exchange the sandbox recorded, checked against LINE's official documents.
    pub fn assert_contract(&self) {
        let log = self.sb.exchanges();
        assert!(!log.is_empty(), "the sandbox recorded the traffic");
        crate::contract::assert_all(log.iter().map(|e| tsunagu_contract::Exchange {
            method: &e.method,
            path: &e.path,
            status: e.status,
            request_body: &e.request_body,
            response_body: &e.response_body,
        }));
    }

    pub fn texts_of(&self, user: &str) -> Vec<String> {
        self.sb
            .received_by(user)
            .iter()
            .map(|r| r.message.get("text").and_then(|t| t.as_str()).unwrap_or("").to_string())
            .collect()
    }
}
