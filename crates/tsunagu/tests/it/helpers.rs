//! Test harness: the app in-process on port 0 with a fresh database, an HTTP client with a
//! cookie jar, explicit job stepping, and the real binary for process-level tests.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tsunagu::app::SharedApp;
use tsunagu::clock::OffsetClock;
use tsunagu::config::Config;
use tsunagu::jobs::worker::Worker;
use tsunagu::startup::{Server, build_app};

pub const PASSWORD: &str = "correct-horse-battery";

/// Every place in the console's navigation with its page heading (the last two are admin-only).
pub const CONSOLE_PLACES: &[(&str, &str)] = &[
    ("/home", "ホーム"),
    ("/events", "申込状況サマリー"),
    ("/settings/basic", "基本設定"),
    ("/settings/payments", "決済（Stripe）"),
    ("/settings/legal", "特定商取引法に基づく表記"),
    ("/mail-templates", "自動配信メール"),
    ("/courses", "コース"),
    ("/courses/media", "ステップ配信のメディア"),
    ("/settings/line", "公式LINE連携"),
    ("/mails", "送信済みメール"),
    ("/account/password", "パスワード変更"),
    ("/admin/accounts", "アカウントとプラン"),
    ("/admin/jobs", "失敗したジョブ"),
];

/// The test tools' Python (aiosmtpd, moto), from `TSUNAGU_TEST_PYTHON` as `scripts/test` sets
/// it. `None` locally without it (the caller skips, saying `what`); under CI it must be there.
pub fn test_python(what: &str) -> Option<String> {
    match std::env::var("TSUNAGU_TEST_PYTHON") {
        Ok(p) => Some(p),
        Err(_) => {
            assert!(std::env::var("CI").is_err(), "TSUNAGU_TEST_PYTHON is not set under CI: run ./scripts/test");
            eprintln!("TSUNAGU_TEST_PYTHON not set: skipping {what}");
            None
        }
    }
}

/// Every HTTP client in the tests starts here (see the rustls note in Cargo.toml).
pub fn http() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

pub use tsunagu_store::testing::{TempDir, pg_admin_url};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub async fn database_url(db: Db, dir: &Path) -> Option<String> {
    match db {
        Db::Sqlite => Some(format!("sqlite://{}/tsunagu.db", dir.display())),
        Db::Postgres => {
            let admin = pg_admin_url()?;
            Some(tsunagu_store::testing::create_pg_database(&admin, "tsunagu_app").await.expect("create database"))
        }
    }
}

pub fn test_config(dir: &Path, db_url: &str) -> Config {
    let mut c = Config::default();
    c.data.dir = dir.to_path_buf();
    c.database.url = db_url.to_string();
    c.http.listen = "127.0.0.1:0".into();
    c.jobs.enabled = false;
    c.jobs.backoff_base_seconds = 1;
    c.jobs.max_attempts = 3;
    // Tests step the queue themselves: webhook events are handled as soon as they are asked to.
    c.line.events_delay_ms = 0;
    c
}

pub struct TestApp {
    pub addr: String,
    pub app: SharedApp,
    pub clock: Arc<OffsetClock>,
    pub worker: Worker,
    pub dir: Option<TempDir>,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// The app pointed at a Zoom sandbox served at `zoom_base`.
    pub async fn spawn_with_zoom(zoom_base: &str) -> TestApp {
        Self::spawn_with(|c| {
            c.zoom.api_base_url = format!("{zoom_base}/v2");
            c.zoom.oauth_base_url = zoom_base.to_string();
        })
        .await
    }

    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = TempDir::new("tsunagu-app");
        let url = database_url(Db::Sqlite, dir.path()).await.unwrap();
        let mut config = test_config(dir.path(), &url);
        tweak(&mut config);
        Self::start(config, dir).await
    }

    /// The app on SQLite or on a fresh PostgreSQL database (`None` when PostgreSQL is not
    /// configured, allowed only outside CI).
    pub async fn spawn_on(db: Db, tweak: impl FnOnce(&mut Config)) -> Option<TestApp> {
        let dir = TempDir::new("tsunagu-app");
        let url = database_url(db, dir.path()).await?;
        let mut config = test_config(dir.path(), &url);
        if db == Db::Postgres {
            // On PostgreSQL the key is never generated (every instance must share one).
            let key = dir.path().join("master.key");
            tsunagu::crypto::Keyring::new(tsunagu::crypto::MasterKey::generate()).write_file(&key).unwrap();
            config.secrets.master_key_file = Some(key);
        }
        tweak(&mut config);
        Some(Self::start(config, dir).await)
    }

    pub async fn start(config: Config, dir: TempDir) -> TestApp {
        let clock = Arc::new(OffsetClock::default());
        let app = build_app(config, clock.clone()).await.expect("build app");
        let server = Server::bind(app.clone()).await.expect("bind");
        let addr = format!("http://{}", server.local_addr());
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        let task = tokio::spawn(async move {
            server.run(s).await.expect("server run");
        });
        let worker = Worker::new(app.clone());
        TestApp { addr, app, clock, worker, dir: Some(dir), shutdown, task: Some(task) }
    }

    /// Stop the server (as on SIGTERM) and wait for it.
    pub async fn stop(mut self) -> TempDir {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.dir.take().expect("a running app owns its directory")
    }

    pub fn client(&self) -> Client {
        Client::new(&self.addr)
    }

    /// Run every job that is due now.
    pub async fn run_jobs(&self) -> usize {
        self.worker.drain().await
    }

    pub async fn job_counts(&self) -> Vec<(String, i64)> {
        let mut c = self.app.store.read().await.unwrap();
        tsunagu_store::jobs::counts(&mut c).await.unwrap()
    }

    /// How many jobs of `kind` are queued or running.
    pub async fn jobs_of(&self, kind: &str) -> usize {
        let mut c = self.app.store.read().await.unwrap();
        let mut n = 0;
        for state in ["queued", "running"] {
            let jobs = tsunagu_store::jobs::list_by_state(&mut c, state, 1000).await.unwrap();
            n += jobs.iter().filter(|j| j.kind == kind).count();
        }
        n
    }

    /// Tests end with this: nothing may be left queued or running.
    pub async fn assert_no_jobs_left(&self) {
        self.run_jobs().await;
        // The recurring schedules (maintenance, Stripe's reconciliation) are always queued once a
        // worker has run.
        let recurring: Vec<&str> = tsunagu::features::job_registry().recurring().map(|k| k.name).collect();
        let mut c = self.app.store.read().await.unwrap();
        let left: Vec<_> = tsunagu_store::jobs::list_by_state(&mut c, "queued", 100)
            .await
            .unwrap()
            .into_iter()
            .chain(tsunagu_store::jobs::list_by_state(&mut c, "running", 100).await.unwrap())
            .filter(|j| !recurring.contains(&j.kind.as_str()))
            .map(|j| (j.kind, j.state))
            .collect();
        assert!(left.is_empty(), "jobs left over: {left:?}");
    }

    /// Create an account through the sign-up form; returns a logged-in client.
    pub async fn signup(&self, email: &str, name: &str) -> Client {
        let c = self.client();
        let page = c.get("/signup").await;
        let token = csrf(&page.text);
        let r = c
            .post_form(
                "/signup",
                &[
                    ("csrf_token", token.as_str()),
                    ("name", name),
                    ("email", email),
                    ("password", PASSWORD),
                    ("password_confirm", PASSWORD),
                ],
            )
            .await;
        assert_eq!(r.status, 303, "signup failed: {}", r.text);
        c
    }

    pub async fn make_admin(&self, email: &str) {
        let mut c = self.app.store.conn().await.unwrap();
        let e = tsunagu_core::Email::parse(email).unwrap();
        let creds = tsunagu_store::accounts::credentials_by_email(&mut c, &e).await.unwrap().unwrap();
        tsunagu_store::accounts::set_role(&mut c, creds.account.id, tsunagu_core::Role::Admin, 0).await.unwrap();
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub struct Page {
    pub status: u16,
    pub text: String,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
}

/// A browser-like client: cookie jar, no automatic redirects.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    jar: Arc<reqwest::cookie::Jar>,
}

impl Client {
    pub fn new(base: &str) -> Client {
        Self::with_jar(base, Arc::new(reqwest::cookie::Jar::default()))
    }

    /// The same browser (its cookies) talking to another instance.
    pub fn carry_to(&self, base: &str) -> Client {
        use reqwest::cookie::CookieStore;
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let from: reqwest::Url = self.base.parse().unwrap();
        let to: reqwest::Url = base.parse().unwrap();
        if let Some(header) = self.jar.cookies(&from) {
            for c in header.to_str().unwrap().split("; ") {
                jar.add_cookie_str(c, &to);
            }
        }
        Self::with_jar(base, jar)
    }

    fn with_jar(base: &str, jar: Arc<reqwest::cookie::Jar>) -> Client {
        let http = http()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Client { base: base.to_string(), http, jar }
    }

    async fn page(resp: reqwest::Response) -> Page {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let location = headers.get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
        Page { status, text: resp.text().await.unwrap_or_default(), location, headers }
    }

    pub async fn get(&self, path: &str) -> Page {
        Self::page(self.http.get(format!("{}{path}", self.base)).send().await.unwrap()).await
    }

    /// An upload as `assets/media.js` sends it: the file as the body, its name percent-encoded.
    pub async fn put_upload(&self, path: &str, csrf: &str, file_name: &str, body: Vec<u8>) -> Page {
        let name: String = file_name.bytes().map(|b| format!("%{b:02X}")).collect();
        let r = self.http.put(format!("{}{path}", self.base)).header("x-csrf-token", csrf).header("x-file-name", name);
        Self::page(r.body(body).send().await.unwrap()).await
    }

    /// GET that reports a failed connection (a killed process) as `None`.
    pub async fn try_get(&self, path: &str) -> Option<Page> {
        Some(Self::page(self.http.get(format!("{}{path}", self.base)).send().await.ok()?).await)
    }

    /// POST that reports a failed connection or a lost answer as `None`.
    pub async fn try_post_form(&self, path: &str, form: &[(&str, &str)]) -> Option<Page> {
        Some(Self::page(self.http.post(format!("{}{path}", self.base)).form(form).send().await.ok()?).await)
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Page {
        Self::page(self.http.post(format!("{}{path}", self.base)).form(form).send().await.unwrap()).await
    }

    /// GET `page_path` for a fresh CSRF token, then POST the form with it.
    pub async fn submit(&self, page_path: &str, action: &str, form: &[(&str, &str)]) -> Page {
        let token = csrf(&self.get(page_path).await.text);
        let mut fields = vec![("csrf_token", token.as_str())];
        fields.extend_from_slice(form);
        self.post_form(action, &fields).await
    }

    /// 基本設定 through the console: the organizer's Server-to-Server app.
    pub async fn connect_zoom(&self, account_id: &str, client_id: &str, client_secret: &str) {
        let form = [
            ("auth_method", "s2s"),
            ("zoom_account_id", account_id),
            ("client_id", client_id),
            ("client_secret", client_secret),
        ];
        let r = self.submit("/settings/basic", "/settings/basic", &form).await;
        assert_eq!(r.status, 303, "{}", r.text);
    }

    pub async fn login(&self, email: &str, password: &str) -> Page {
        self.submit("/login", "/login", &[("email", email), ("password", password)]).await
    }
}

/// The CSRF token embedded in a page's form.
pub fn csrf(html: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).unwrap_or_else(|| panic!("no csrf token in page: {html}")) + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_string()
}

/// The real `tsunagu` binary, for process-level tests (SIGKILL, several instances, logs).
pub struct Process {
    pub child: tokio::process::Child,
    pub base: String,
    pub log: PathBuf,
}

impl Process {
    /// Start `tsunagu serve` with env-only configuration; waits until `/readyz` answers.
    pub async fn serve(env: &[(&str, String)], log: PathBuf) -> Process {
        let port = free_port();
        let mut env = env.to_vec();
        env.push(("TSUNAGU_HTTP__LISTEN", format!("127.0.0.1:{port}")));
        Self::start(&["serve"], &env, port, log).await
    }

    /// Start `tsunagu ARGS…` that listens on `port`; waits until `/readyz` answers.
    pub async fn start(args: &[&str], env: &[(&str, String)], port: u16, log: PathBuf) -> Process {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tsunagu"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TSUNAGU_LOG__LEVEL", "info")
            // Loopback test servers have http:// public URLs (production refuses them for media).
            .env("TSUNAGU_MEDIA__ALLOW_HTTP", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        // stdout (what a person reads) and stderr (the log) both go to the log file.
        let file = std::fs::File::create(&log).unwrap();
        cmd.stdout(file.try_clone().unwrap()).stderr(file);
        let child = cmd.spawn().expect("spawn tsunagu serve");
        let base = format!("http://127.0.0.1:{port}");
        let p = Process { child, base, log };
        p.wait_ready().await;
        p
    }

    async fn wait_ready(&self) {
        let client = http().build().unwrap();
        for _ in 0..300 {
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("tsunagu serve did not become ready; log:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }

    pub fn signal(&self, sig: &str) {
        let status =
            std::process::Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().unwrap();
        assert!(status.success());
    }

    pub async fn wait(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await.expect("process exits").unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// What a process test prints when work is stuck: the jobs not done, and the newest lines of
/// each process's log.
pub async fn stuck_report(c: &mut tsunagu_store::AnyConnection, procs: &[Process]) -> String {
    let mut jobs = Vec::new();
    for state in ["failed", "queued", "running"] {
        for j in tsunagu_store::jobs::list_by_state(c, state, 50).await.unwrap() {
            jobs.push((j.kind, j.state, j.attempts, j.run_at, j.last_error, j.payload));
        }
    }
    let logs: Vec<String> =
        procs.iter().map(|p| p.log_text().lines().rev().take(30).collect::<Vec<_>>().join("\n")).collect();
    format!("jobs: {jobs:?}\nlogs (newest first):\n{}", logs.join("\n----\n"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Poll `check` every 50 ms until it returns true, or panic after `secs`.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Fault injection in the database itself: a trigger refuses `op` (INSERT, UPDATE or DELETE)
/// on `table` while the fault named `name` is switched on with [`set_fault`], for rows where
/// `condition` (SQL over NEW/OLD, the same on both engines) holds.
pub async fn install_fault(store: &tsunagu_store::Store, name: &str, table: &str, op: &str, condition: &str) {
    let mut c = store.conn().await.unwrap();
    sqlx::query("CREATE TABLE IF NOT EXISTS test_faults (name TEXT PRIMARY KEY)").execute(&mut *c).await.unwrap();
    let statements: Vec<String> = match store.backend() {
        tsunagu_store::Backend::Sqlite => vec![format!(
            "CREATE TRIGGER fault_{name} BEFORE {op} ON {table}
                 WHEN EXISTS (SELECT 1 FROM test_faults WHERE name = '{name}') AND ({condition})
                 BEGIN SELECT RAISE(ABORT, 'injected fault {name}'); END"
        )],
        tsunagu_store::Backend::Postgres => vec![
            format!(
                "CREATE FUNCTION fault_{name}() RETURNS trigger AS $$ BEGIN
                   RAISE EXCEPTION 'injected fault {name}';
                 END $$ LANGUAGE plpgsql"
            ),
            format!(
                "CREATE TRIGGER fault_{name} BEFORE {op} ON {table} FOR EACH ROW
                 WHEN ({condition} AND test_fault_on('{name}'))
                 EXECUTE FUNCTION fault_{name}()"
            ),
        ],
    };
    if store.backend() == tsunagu_store::Backend::Postgres {
        // A trigger's WHEN may not query tables: a function does it.
        sqlx::query(
            "CREATE OR REPLACE FUNCTION test_fault_on(n TEXT) RETURNS boolean AS $$
               SELECT EXISTS (SELECT 1 FROM test_faults WHERE name = n) $$ LANGUAGE sql",
        )
        .execute(&mut *c)
        .await
        .unwrap();
    }
    for s in statements {
        sqlx::query(sqlx::AssertSqlSafe(s)).execute(&mut *c).await.unwrap();
    }
}

pub async fn set_fault(store: &tsunagu_store::Store, name: &str, on: bool) {
    let mut c = store.conn().await.unwrap();
    let sql = if on { "INSERT INTO test_faults (name) VALUES ($1)" } else { "DELETE FROM test_faults WHERE name = $1" };
    sqlx::query(sql).bind(name).execute(&mut *c).await.unwrap();
}
