//! A minimal W3C WebDriver client (chromedriver + headless Chromium) for real-browser tests.
//!
//! Only what screen tests need: navigate, find, click, type, read text, run a script, take a
//! screenshot. Every wait is bounded and polls; nothing sleeps blindly. Reuse it from feature
//! tests (Zoom, LINE screens) as `crate::webdriver::Browser`.

// A small library for many tests: not every helper is used by every test yet.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::helpers::{TempDir, free_port};

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The W3C key under which an element reference travels.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
const POLL: Duration = Duration::from_millis(100);
/// The narrowest window headless Chromium makes.
const MIN_WINDOW_WIDTH: u32 = 500;

/// A reference to an element of the current page (stale once the page changes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElementId(pub String);

/// A WebDriver error answer (`value.error` and `value.message`), or a transport failure.
#[derive(Debug)]
pub struct WdError {
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

/// One chromedriver process with one browser session; both end on drop.
pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`
    session: String,
    driver_port: u16,
    session_id: String,
    // Field order matters: the driver is killed before the profile directory is removed.
    _driver: tokio::process::Child,
    profile: TempDir,
}

impl Browser {
    /// Start chromedriver and a headless Chromium window of `width`×`height` CSS pixels
    /// (below 500 px wide: an emulated phone screen of that size).
    ///
    /// `None` (the test skips) when chromedriver is not installed locally; under CI a missing
    /// driver is a failure, so browser tests cannot silently stop running there.
    pub async fn start(width: u32, height: u32) -> Option<Browser> {
        if !std::path::Path::new(CHROMEDRIVER).exists() {
            assert!(
                std::env::var("CI").is_err(),
                "{CHROMEDRIVER} is missing under CI: install the chromium-driver package (browser tests must run in CI)"
            );
            eprintln!("{CHROMEDRIVER} not found: skipping a browser test");
            return None;
        }
        let profile = TempDir::new("tsunagu-chromium");
        let log = profile.path().join("chromedriver.log");
        let port = free_port();
        let mut driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn chromedriver");
        // No proxy: everything a test talks to is on loopback.
        let http = crate::helpers::http().no_proxy().timeout(Duration::from_secs(60)).build().unwrap();
        let base = format!("http://127.0.0.1:{port}");

        let driver_log = || std::fs::read_to_string(&log).unwrap_or_default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            if let Ok(Some(status)) = driver.try_wait() {
                panic!("chromedriver exited ({status}) before it was ready; log:\n{}", driver_log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver not ready after 15 s; log:\n{}",
                driver_log()
            );
            tokio::time::sleep(POLL).await;
        }

        let args = [
            "--headless=new".to_string(),
            // Tests run as root in a container: Chromium refuses to start sandboxed there.
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            // /dev/shm is tiny in containers; Chromium crashes on big pages without this.
            "--disable-dev-shm-usage".into(),
            // No network besides loopback: keep Chromium from reaching out on its own.
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            format!("--user-data-dir={}", profile.path().join("profile").display()),
            format!("--window-size={width},{height}"),
        ];
        let mut chrome = json!({ "binary": CHROMIUM, "args": args });
        if width < MIN_WINDOW_WIDTH {
            // Headless Chromium will not make a window narrower than 500 px, so phone widths
            // are emulated as a phone: exact viewport, mobile viewport rules, touch.
            chrome["mobileEmulation"] = json!({
                "deviceMetrics": { "width": width, "height": height, "pixelRatio": 1.0, "mobile": true, "touch": true }
            });
        }
        let caps =
            json!({ "capabilities": { "alwaysMatch": { "browserName": "chrome", "goog:chromeOptions": chrome } } });
        let created = match wd(&http, reqwest::Method::POST, &format!("{base}/session"), Some(caps)).await {
            Ok(v) => v,
            Err(e) => panic!("cannot start Chromium through chromedriver: {e}; log:\n{}", driver_log()),
        };
        let session_id = created["sessionId"].as_str().expect("sessionId").to_string();
        let b = Browser {
            http,
            session: format!("{base}/session/{session_id}"),
            driver_port: port,
            session_id,
            _driver: driver,
            profile,
        };
        // Bound page loads and scripts so a hung page fails the test instead of stalling it.
        b.post("/timeouts", json!({ "pageLoad": 30_000, "script": 10_000, "implicit": 0 })).await;
        if width >= MIN_WINDOW_WIDTH {
            // --window-size is the outer window; grow it by the browser's own frame so the
            // page (and every screenshot) gets exactly width×height.
            let frame = b.execute("return [outerWidth - innerWidth, outerHeight - innerHeight]", vec![]).await;
            let (dw, dh) = (frame[0].as_u64().unwrap_or(0), frame[1].as_u64().unwrap_or(0));
            if dw > 0 || dh > 0 {
                b.post("/window/rect", json!({ "width": u64::from(width) + dw, "height": u64::from(height) + dh }))
                    .await;
            }
        }
        Some(b)
    }

    /// The chromedriver log, for failure messages.
    pub fn driver_log(&self) -> String {
        std::fs::read_to_string(self.profile.path().join("chromedriver.log")).unwrap_or_default()
    }

    async fn try_cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, WdError> {
        wd(&self.http, method, &format!("{}{path}", self.session), body).await
    }

    /// A command that must succeed: a failure panics naming the command.
    async fn cmd(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let body = if method == reqwest::Method::GET { None } else { Some(body) };
        let m = method.clone();
        self.try_cmd(method, path, body).await.unwrap_or_else(|e| panic!("WebDriver {m} {path} failed: {e}"))
    }

    async fn get(&self, path: &str) -> Value {
        self.cmd(reqwest::Method::GET, path, Value::Null).await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.cmd(reqwest::Method::POST, path, body).await
    }

    /// Navigate and wait for the page load (bounded by the session's pageLoad timeout).
    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    /// The session's windows and tabs.
    pub async fn window_handles(&self) -> Vec<String> {
        let v = self.get("/window/handles").await;
        v.as_array().map(|a| a.iter().filter_map(|h| h.as_str().map(str::to_string)).collect()).unwrap_or_default()
    }

    pub async fn current_url(&self) -> String {
        self.get("/url").await.as_str().unwrap_or_default().to_string()
    }

    pub async fn page_source(&self) -> String {
        self.get("/source").await.as_str().unwrap_or_default().to_string()
    }

    async fn try_find(&self, css: &str) -> Result<ElementId, WdError> {
        let v = self
            .try_cmd(reqwest::Method::POST, "/element", Some(json!({ "using": "css selector", "value": css })))
            .await?;
        Ok(element_id(&v))
    }

    /// The first element matching `css`, now (no waiting: use `wait_for` after navigation).
    pub async fn find(&self, css: &str) -> ElementId {
        match self.try_find(css).await {
            Ok(e) => e,
            Err(e) => panic!("no element {css:?} on {}: {e}", self.current_url().await),
        }
    }

    pub async fn find_all(&self, css: &str) -> Vec<ElementId> {
        let v = self.post("/elements", json!({ "using": "css selector", "value": css })).await;
        v.as_array().map(|a| a.iter().map(element_id).collect()).unwrap_or_default()
    }

    /// Click like a user: chromedriver scrolls it into view and refuses hidden or covered
    /// elements, so a link that is not visible at this window size fails the test.
    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.click_element(&e).await;
    }

    pub async fn click_element(&self, e: &ElementId) {
        self.post(&format!("/element/{}/click", e.0), json!({})).await;
    }

    /// Clear the field, then type `text` key by key (real input events, IME-free).
    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.post(&format!("/element/{}/clear", e.0), json!({})).await;
        self.post(&format!("/element/{}/value", e.0), json!({ "text": text })).await;
    }

    /// Send keys without clearing first (a file input takes the file's path this way).
    pub async fn send_keys(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.post(&format!("/element/{}/value", e.0), json!({ "text": text })).await;
    }

    /// The rendered (visible) text of the first match of `css`.
    pub async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.element_text(&e).await
    }

    pub async fn element_text(&self, e: &ElementId) -> String {
        self.get(&format!("/element/{}/text", e.0)).await.as_str().unwrap_or_default().to_string()
    }

    /// An attribute as written in the HTML (`href="/home"`, not the resolved URL).
    pub async fn attribute(&self, e: &ElementId, name: &str) -> Option<String> {
        self.get(&format!("/element/{}/attribute/{name}", e.0)).await.as_str().map(str::to_string)
    }

    /// Whether the first match of `css` exists and is rendered visibly.
    pub async fn is_displayed(&self, css: &str) -> bool {
        match self.try_find(css).await {
            Ok(e) => self.element_displayed(&e).await.unwrap_or(false),
            Err(_) => false,
        }
    }

    async fn element_displayed(&self, e: &ElementId) -> Result<bool, WdError> {
        let v = self.try_cmd(reqwest::Method::GET, &format!("/element/{}/displayed", e.0), None).await?;
        Ok(v.as_bool().unwrap_or(false))
    }

    /// Click the visible link, button or label whose text is `text` (spaces trimmed), as a
    /// person following the manual's ［…］ would; waits up to 10 s for it. `within` narrows to
    /// the element matching that CSS selector.
    pub async fn click_text(&self, text: &str) {
        self.click_text_in("body", text).await
    }

    pub async fn click_text_in(&self, within: &str, text: &str) {
        let script = "
            const [within, text] = arguments;
            const root = document.querySelector(within);
            if (!root) return false;
            const norm = s => s.replace(/\\s+/g, ' ').trim();
            const all = [...root.querySelectorAll('a, button, label, summary')];
            const hit = all.find(e => e.offsetParent !== null && (norm(e.textContent) === text || e.getAttribute('aria-label') === text));
            if (!hit) return false;
            hit.scrollIntoView({block: 'center'});
            hit.click();
            return true;";
        self.until(&format!("a visible {text:?} to click"), || async {
            self.execute(script, vec![json!(within), json!(text)]).await == json!(true)
        })
        .await;
    }

    /// In the visible fieldset whose legend is `legend`, choose the option labelled `option`.
    pub async fn choose(&self, legend: &str, option: &str) {
        let script = "
            const [legend, option] = arguments;
            const norm = s => s.replace(/\\s+/g, ' ').trim();
            const set = [...document.querySelectorAll('fieldset')].find(f => f.offsetParent !== null
                && f.querySelector('legend') && norm(f.querySelector('legend').textContent) === legend);
            if (!set) return false;
            const label = [...set.querySelectorAll('label')].find(l => norm(l.textContent) === option);
            if (!label) return false;
            label.scrollIntoView({block: 'center'});
            label.click();
            const input = label.querySelector('input');
            return !!input && input.checked;";
        self.until(&format!("{legend} → {option}"), || async {
            self.execute(script, vec![json!(legend), json!(option)]).await == json!(true)
        })
        .await;
    }

    /// Fill the visible field whose label starts with `label` (its text before the field):
    /// typed like a person for text, set as a picker would for date and time.
    pub async fn fill(&self, label: &str, value: &str) {
        let script = "
            const [label, value] = arguments;
            const norm = s => s.replace(/\\s+/g, ' ').trim();
            const l = [...document.querySelectorAll('label')].find(l => l.offsetParent !== null
                && norm(l.firstChild && l.firstChild.nodeType === 3 ? l.firstChild.textContent : l.textContent).startsWith(label));
            if (!l) return null;
            const input = l.querySelector('input, textarea, select');
            if (!input) return null;
            input.scrollIntoView({block: 'center'});
            if (input.type === 'datetime-local' || input.type === 'time' || input.tagName === 'SELECT') {
                input.value = value;
                input.dispatchEvent(new Event('change', {bubbles: true}));
                return 'set';
            }
            input.value = '';
            input.focus();
            return input.name;";
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let target = loop {
            let found = self.execute(script, vec![json!(label), json!(value)]).await;
            if !found.is_null() {
                break found;
            }
            if tokio::time::Instant::now() >= deadline {
                self.fail(&format!("no field labelled {label:?} after 10 s")).await;
            }
            tokio::time::sleep(POLL).await;
        };
        if let Some(name) = target.as_str().filter(|n| *n != "set") {
            let css = format!("[name=\"{name}\"]");
            self.send_keys(&css, value).await;
        }
    }

    /// Poll `check` every 100 ms for up to 10 s; fail with a screenshot if it never holds.
    async fn until<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !check().await {
            if tokio::time::Instant::now() >= deadline {
                self.fail(&format!("no {what} after 10 s")).await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Run `script` (a function body; use `return`) with `args` as `arguments`.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args })).await
    }

    /// Wait up to `secs` for a visible element matching `css`, polling every 100 ms.
    /// On timeout it panics with the URL and a screenshot of what the browser showed.
    pub async fn wait_for(&self, css: &str, secs: u64) -> ElementId {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            // Stale or missing elements just mean "not yet" while a page is loading.
            if let Ok(e) = self.try_find(css).await
                && let Ok(true) = self.element_displayed(&e).await
            {
                return e;
            }
            if tokio::time::Instant::now() >= deadline {
                self.fail(&format!("no visible {css:?} after {secs} s")).await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Wait up to `secs` for a `confirm()`/`alert()` dialog; answer it (OK when `accept`)
    /// and return what it asked.
    pub async fn answer_dialog(&self, accept: bool, secs: u64) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(text) = self.try_cmd(reqwest::Method::GET, "/alert/text", None).await {
                self.post(if accept { "/alert/accept" } else { "/alert/dismiss" }, json!({})).await;
                return text.as_str().unwrap_or_default().to_string();
            }
            if tokio::time::Instant::now() >= deadline {
                self.fail(&format!("no dialog after {secs} s")).await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Wait up to `secs` until the first match of `css` has text containing `needle`
    /// (e.g. the `h1` of the page a click leads to).
    pub async fn wait_for_text(&self, css: &str, needle: &str, secs: u64) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        let mut last = String::new();
        loop {
            if let Ok(e) = self.try_find(css).await
                && let Ok(v) = self.try_cmd(reqwest::Method::GET, &format!("/element/{}/text", e.0), None).await
            {
                last = v.as_str().unwrap_or_default().to_string();
                if last.contains(needle) {
                    return last;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                self.fail(&format!("{css:?} never contained {needle:?} within {secs} s (last: {last:?})")).await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Wait up to `secs` until the current URL's path (and query) is `path`.
    pub async fn wait_for_path(&self, path: &str, secs: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let url = self.current_url().await;
            if url_path(&url) == path {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                self.fail(&format!("URL never became {path:?} within {secs} s (now {url})")).await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn fail(&self, what: &str) -> ! {
        let shot = self.screenshot("failure").await;
        panic!("{what}\n  url: {}\n  screenshot: {}", self.current_url().await, shot.display());
    }

    /// Save a PNG of the viewport as `<workspace>/target/screenshots/<name>.png`; returns the path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .expect("screenshot is base64");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    /// End the session so Chromium exits (killing only the driver can orphan it), then the
    /// driver is killed (`kill_on_drop`). Drop cannot await, so this is one blocking request
    /// on loopback with a short timeout.
    fn drop(&mut self) {
        let req = format!(
            "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.session_id, self.driver_port
        );
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.driver_port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
            if s.write_all(req.as_bytes()).is_ok() {
                // Wait for the whole answer (the driver answers once Chromium has quit);
                // it keeps the connection open, so stop at Content-Length, not at EOF.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while let Ok(n @ 1..) = s.read(&mut chunk) {
                    buf.extend_from_slice(&chunk[..n]);
                    if http_response_complete(&buf) {
                        break;
                    }
                }
            }
        }
    }
}

/// Whether `buf` holds a whole HTTP/1.1 response with a Content-Length body.
fn http_response_complete(buf: &[u8]) -> bool {
    let text = String::from_utf8_lossy(buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let len = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    body.len() >= len
}

/// `<workspace>/target/screenshots` (the workspace is two levels above this crate).
pub fn screenshot_dir() -> PathBuf {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .parent()
        .and_then(|p| p.parent())
        .expect("crates/<name> in a workspace")
        .join("target")
        .join("screenshots")
}

/// The path and query of an absolute URL (`http://h:1/a?b` → `/a?b`).
pub fn url_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    after_scheme.find('/').map_or("/", |i| &after_scheme[i..])
}

fn element_id(v: &Value) -> ElementId {
    ElementId(v[ELEMENT_KEY].as_str().unwrap_or_else(|| panic!("not an element reference: {v}")).to_string())
}

/// One WebDriver round trip: the `value` of a success, or the error the driver reported.
async fn wd(http: &reqwest::Client, method: reqwest::Method, url: &str, body: Option<Value>) -> Result<Value, WdError> {
    let mut req = http.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.map_err(|e| WdError { error: "transport".into(), message: e.to_string() })?;
    let ok = resp.status().is_success();
    let v: Value = resp.json().await.map_err(|e| WdError { error: "bad answer".into(), message: e.to_string() })?;
    let value = v.get("value").cloned().unwrap_or(Value::Null);
    if ok {
        Ok(value)
    } else {
        Err(WdError {
            error: value["error"].as_str().unwrap_or("unknown error").to_string(),
            message: value["message"].as_str().unwrap_or_default().to_string(),
        })
    }
}
