//! A Zoom sandbox with one organizer account, and a client pointed at it; an in-memory store
//! of OAuth tokens.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::time::Duration;

use tsunagu_sandbox::zoom::{S2sApp, SandboxUser, ZoomSandbox};
use tsunagu_zoom::auth::S2sCredentials;
use tsunagu_zoom::limits::ZoomPlan;
use tsunagu_zoom::model::NewRegistrant;
use tsunagu_zoom::oauth::{BoxFuture, LockedTokens, OAuthTokens, TokenStore};
use tsunagu_zoom::scopes;
use tsunagu_zoom::settings::{self, MeetingOptions, Recording, Schedule, UrlSender, WebinarOptions};
use tsunagu_zoom::{Auth, ClientConfig, Organizer, ZoomClient};

pub const ACCOUNT: &str = "sbx-account-1";
pub const OWNER: &str = "owner@example.com";
pub const ALT_HOST: &str = "alt-host@example.com";

pub struct Zoom {
    pub sb: ZoomSandbox,
    pub base: String,
    pub client: Arc<ZoomClient>,
    pub org: Organizer,
    /// The client's wall clock (unix ms): tests move it to the next UTC day.
    pub now: Arc<AtomicI64>,
}

pub fn all_scopes() -> Vec<String> {
    scopes::REQUIRED.iter().map(|s| s.name.to_string()).collect()
}

pub fn creds() -> S2sCredentials {
    S2sCredentials { account_id: ACCOUNT.into(), client_id: "cid-1".into(), client_secret: "secret-1".into() }
}

impl Zoom {
    pub async fn start() -> Zoom {
        Zoom::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut ClientConfig)) -> Zoom {
        let sb = ZoomSandbox::new();
        sb.add_app(S2sApp {
            account_id: ACCOUNT.into(),
            client_id: "cid-1".into(),
            client_secret: "secret-1".into(),
            scopes: all_scopes(),
        });
        sb.add_user(SandboxUser {
            account_id: ACCOUNT.into(),
            id: "owner-user-id".into(),
            email: OWNER.into(),
            first_name: "Owner".into(),
            last_name: "Zoom".into(),
            licensed: true,
            webinar_license: true,
        });
        let (base, _task) = tsunagu_sandbox::serve(sb.router()).await.expect("sandbox starts");
        let mut cfg = ClientConfig::new(&format!("{base}/v2"), &base);
        cfg.timeout = Duration::from_secs(5);
        cfg.backoff_base = Duration::from_millis(20);
        tune(&mut cfg);
        let now = Arc::new(AtomicI64::new(jiff::Timestamp::now().as_millisecond()));
        let clock = now.clone();
        let client = Arc::new(ZoomClient::new(cfg).with_clock(Arc::new(move || clock.load(Ordering::SeqCst))));
        let org = Organizer { key: "organizer-1".into(), auth: Auth::S2s(creds()), plan: ZoomPlan::Pro };
        Zoom { sb, base, client, org, now }
    }

    pub fn next_day(&self) {
        self.now.fetch_add(86_400_000, Ordering::SeqCst);
        self.sb.reset_daily();
    }

    /// Every exchange the sandbox saw, checked against the official schemas.
    pub fn assert_contract(&self) {
        let log = self.sb.exchanges();
        assert!(!log.is_empty(), "the sandbox recorded the traffic");
        crate::contract::assert_all(log.iter().map(|e| crate::contract::Exchange {
            method: &e.method,
            path: &e.path,
            status: e.status,
            request_body: &e.request_body,
            response_body: &e.response_body,
        }));
    }
}

pub fn schedule(topic: &str) -> Schedule<'_> {
    // Far enough ahead that the event is never over while tests run.
    Schedule {
        topic,
        start: jiff::civil::date(2030, 12, 5).at(19, 30, 0, 0),
        time_zone: "Asia/Tokyo",
        duration_minutes: 90,
    }
}

pub fn meeting_options(registration: bool) -> MeetingOptions {
    MeetingOptions {
        waiting_room: true,
        join_before_host: false,
        registration,
        url_sender: UrlSender::Tsunagu,
        participant_video: true,
        participant_mic: false,
    }
}

pub fn webinar_options() -> WebinarOptions {
    WebinarOptions {
        registration: true,
        url_sender: UrlSender::Tsunagu,
        multiple_devices: false,
        panelist_video: true,
        q_and_a: true,
        on_demand: false,
        practice_session: false,
        recording: Recording::Cloud,
    }
}

pub fn meeting_body(topic: &str, registration: bool) -> settings::MeetingCreate {
    settings::meeting(&schedule(topic), &meeting_options(registration)).expect("valid settings").0
}

pub fn person(i: usize) -> NewRegistrant {
    NewRegistrant {
        first_name: format!("参加者{i}"),
        last_name: "テスト".into(),
        email: format!("person{i}@example.com"),
        custom_questions: vec![],
        auto_approve: None,
    }
}

/// An in-memory [`TokenStore`] shared by several clients (the "instances"): one lock for all
/// keys, and saves that can be made to fail.
#[derive(Clone, Default)]
pub struct MemoryStore {
    pairs: Arc<tokio::sync::Mutex<HashMap<String, OAuthTokens>>>,
    /// The next this many saves fail (as when the database is down).
    pub failing_saves: Arc<AtomicU32>,
}

impl MemoryStore {
    pub async fn put(&self, key: &str, tokens: OAuthTokens) {
        self.pairs.lock().await.insert(key.to_string(), tokens);
    }

    pub async fn get(&self, key: &str) -> Option<OAuthTokens> {
        self.pairs.lock().await.get(key).cloned()
    }
}

struct MemoryLocked {
    pairs: tokio::sync::OwnedMutexGuard<HashMap<String, OAuthTokens>>,
    key: String,
    failing_saves: Arc<AtomicU32>,
}

impl TokenStore for MemoryStore {
    fn lock(&self, key: String) -> BoxFuture<Result<Box<dyn LockedTokens>, String>> {
        let (pairs, failing_saves) = (self.pairs.clone(), self.failing_saves.clone());
        Box::pin(async move {
            let pairs = pairs.lock_owned().await;
            Ok(Box::new(MemoryLocked { pairs, key, failing_saves }) as Box<dyn LockedTokens>)
        })
    }
}

impl LockedTokens for MemoryLocked {
    fn tokens(&self) -> Option<&OAuthTokens> {
        self.pairs.get(&self.key)
    }

    fn save(mut self: Box<Self>, tokens: OAuthTokens) -> BoxFuture<Result<(), String>> {
        Box::pin(async move {
            if self.failing_saves.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                return Err("database down".into());
            }
            self.pairs.insert(self.key.clone(), tokens);
            Ok(())
        })
    }
}

pub fn pending_person(email: &str) -> NewRegistrant {
    NewRegistrant {
        first_name: "通りすがり".into(),
        last_name: String::new(),
        email: email.into(),
        custom_questions: vec![],
        auto_approve: None,
    }
}

impl Zoom {
    /// An add made outside Tsunagu (as Zoom's own registration page does: no `auto_approve`),
    /// with a token of the same app. Returns Zoom's answer.
    pub async fn raw_add(&self, event: tsunagu_zoom::model::EventRef, email: &str) -> serde_json::Value {
        let (token, _) = self.client.token(&self.org).await.expect("a token");
        let path = match event {
            tsunagu_zoom::model::EventRef::Meeting(id) => format!("/meetings/{id}"),
            tsunagu_zoom::model::EventRef::Webinar(id) => format!("/webinars/{id}"),
        };
        let url = format!("{}/v2{path}/registrants", self.base);
        let resp = reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .json(&serde_json::json!({"first_name": "通りすがり", "email": email}))
            .send()
            .await
            .expect("the sandbox answers");
        assert_eq!(resp.status().as_u16(), 201);
        resp.json().await.expect("JSON")
    }
}
