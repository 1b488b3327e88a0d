//! A small W3C WebDriver client for the real-browser tests: `chromedriver` started on a free
//! port, one headless Chromium session, and the commands the tests use (navigate, find by CSS,
//! click, type, read text, run a script, resize, screenshot).
//!
//! Map:
//! - [`Browser::start`]: finds `chromedriver` and `chromium` (panics naming the packages when
//!   either is missing: a browser test never skips), starts the driver, waits for its
//!   "started successfully" line, opens a session.
//! - [`Browser::wait`]: there is no signal from inside the page, so conditions are polled every
//!   [`POLL`] until [`WAIT_LIMIT`], and a timeout fails naming what was awaited.
//! - [`Browser::screenshot`]: PNG files under `target/dashboard-screenshots/`.
//!
//! Invariants: the session is deleted and the driver killed and reaped on every path (the
//! guard's `Drop`); nothing here asserts on speed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// The key of an element reference in W3C WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Longest wait for something on the page (a live counter, a search result). 30 s: the page
/// updates within a second or two; the machine may be busy compiling.
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// How often a condition on the page is checked.
const POLL: Duration = Duration::from_millis(100);

/// Longest the driver gets to say it started.
const DRIVER_START_LIMIT: Duration = Duration::from_secs(30);

/// The path of an executable on `PATH` (or the file `name` itself when absolute).
fn which(name: &str) -> Option<PathBuf> {
    let direct = Path::new(name);
    if direct.is_absolute() {
        return direct.is_file().then(|| direct.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// One element of the page.
#[derive(Debug, Clone)]
pub struct Element(String);

/// A headless Chromium driven through chromedriver; quits and stops the driver when dropped.
pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT`
    driver: String,
    /// `/session/ID`
    session: String,
    child: Option<Child>,
    shots: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a headless session with a `width` x `height` window.
    ///
    /// # Panics
    ///
    /// When chromedriver or chromium is not installed (`scripts/setup` installs them), or the
    /// driver does not start: a browser test must not pass without a browser.
    pub async fn start(width: u32, height: u32) -> Browser {
        let driver_bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let driver_path = which(&driver_bin).unwrap_or_else(|| {
            panic!(
                "{driver_bin} not found: the dashboard test needs Debian's chromium and \
                 chromium-driver packages (run scripts/setup, or set CHROMEDRIVER)"
            )
        });
        let chromium = std::env::var("CHROMIUM").ok();
        let chromium_found = match &chromium {
            Some(path) => which(path).is_some(),
            None => which("chromium").is_some() || which("chromium-browser").is_some(),
        };
        assert!(
            chromium_found,
            "chromium not found: the dashboard test needs Debian's chromium package \
             (run scripts/setup, or set CHROMIUM)"
        );
        let port = super::free_port();
        let mut child = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver_path.display()));
        // The driver prints one line once it listens: wait for it, not for a timer.
        let stdout = child.stdout.take().expect("driver stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + DRIVER_START_LIMIT;
        let mut said = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("started successfully") => break,
                Ok(line) => said.push(line),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "chromedriver did not start within {DRIVER_START_LIMIT:?}: {}",
                        said.join("\n")
                    );
                }
            }
        }
        let driver = format!("http://127.0.0.1:{port}");
        let mut options = json!({
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                format!("--window-size={width},{height}"),
            ],
        });
        if let Some(binary) = chromium {
            options["binary"] = json!(binary);
        }
        let http = reqwest::Client::new();
        let mut browser = Browser {
            http,
            driver,
            session: String::new(),
            child: Some(child),
            shots: screenshot_dir(),
        };
        let created = browser
            .send(
                reqwest::Method::POST,
                "/session",
                Some(json!({
                    "capabilities": { "alwaysMatch": {
                        "browserName": "chrome",
                        "goog:chromeOptions": options,
                        "goog:loggingPrefs": { "browser": "ALL" },
                    }},
                })),
            )
            .await;
        let id = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {created}"));
        browser.session = format!("/session/{id}");
        browser
    }

    /// Sends a command to the driver; returns its `value`, panicking with the driver's error.
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        match self.try_send(method.clone(), path, body).await {
            Ok(v) => v,
            Err(e) => panic!("WebDriver {method} {path}: {e}"),
        }
    }

    /// As [`Browser::send`], with the driver's error (`"no such element: ..."`) as `Err`.
    async fn try_send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.driver);
        let mut request = self.http.request(method, url);
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        let value: Value = response.json().await.map_err(|e| e.to_string())?;
        let value = value.get("value").cloned().unwrap_or(Value::Null);
        if status.is_success() {
            Ok(value)
        } else {
            Err(format!(
                "{}: {}",
                value["error"].as_str().unwrap_or("error"),
                value["message"]
                    .as_str()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("")
            ))
        }
    }

    async fn session_cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.send(method, &format!("{}{path}", self.session), body)
            .await
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.session_cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The page's current URL.
    pub async fn url(&self) -> String {
        self.session_cmd(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Every element matching a CSS selector now.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self
            .session_cmd(
                reqwest::Method::POST,
                "/elements",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        found
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element matching `css` now, if any.
    pub async fn find(&self, css: &str) -> Option<Element> {
        self.find_all(css).await.into_iter().next()
    }

    /// Polls `check` until it returns `Some`, or panics naming `what` after [`WAIT_LIMIT`].
    pub async fn wait<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if Instant::now() >= deadline {
                let body = self.body_text().await;
                let shot = self.screenshot("timeout").await;
                let console = self.console().await;
                panic!(
                    "timed out after {WAIT_LIMIT:?} waiting for {what}; page at {} \
                     (screenshot {}); console {console:?}:\n{body}",
                    self.url().await,
                    shot.display()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for an element matching `css`.
    pub async fn element(&self, css: &str) -> Element {
        self.wait(&format!("an element {css}"), || self.find(css))
            .await
    }

    /// Waits until the text of the first element matching `css` satisfies `ok`; returns it.
    pub async fn text_where(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        self.wait(&format!("{css} to show {what}"), || async {
            let el = self.find(css).await?;
            // The element may be replaced between find and read: try again then.
            let text = self.try_text(&el).await?;
            ok(&text).then_some(text)
        })
        .await
    }

    /// Waits until the first element matching `css` has exactly this text.
    pub async fn text_is(&self, css: &str, want: &str) -> String {
        self.text_where(css, &format!("{want:?}"), |t| t == want)
            .await
    }

    /// The rendered text of an element.
    pub async fn text(&self, el: &Element) -> String {
        self.try_text(el)
            .await
            .unwrap_or_else(|| panic!("element {el:?} is gone"))
    }

    async fn try_text(&self, el: &Element) -> Option<String> {
        self.try_send(
            reqwest::Method::GET,
            &format!("{}/element/{}/text", self.session, el.0),
            None,
        )
        .await
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
    }

    /// The text of the whole page.
    pub async fn body_text(&self) -> String {
        match self.find("body").await {
            Some(b) => self.try_text(&b).await.unwrap_or_default(),
            None => String::new(),
        }
    }

    /// Waits for `css`, then clicks it (scrolled into view first by the driver).
    pub async fn click_on(&self, css: &str) {
        self.act_on(css, &[("click", json!({}))]).await
    }

    /// Types `text` into an element after clearing it.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.act_on(
            css,
            &[("clear", json!({})), ("value", json!({ "text": text }))],
        )
        .await
    }

    /// Waits for `css` and sends the element `commands` (`POST .../element/{id}/{command}`)
    /// in order. A page that re-renders between the find and a command leaves a stale element
    /// behind; the commands are then sent again to a fresh one. Any other driver error fails.
    async fn act_on(&self, css: &str, commands: &[(&str, Value)]) {
        self.wait(&format!("an element {css} to act on"), || async {
            let el = self.find(css).await?;
            for (command, body) in commands {
                let path = format!("{}/element/{}/{command}", self.session, el.0);
                match self
                    .try_send(reqwest::Method::POST, &path, Some(body.clone()))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.starts_with("stale element reference") => return None,
                    Err(e) => panic!("WebDriver POST {path}: {e}"),
                }
            }
            Some(())
        })
        .await
    }

    /// Runs a script in the page (`return ...;`) and returns its value.
    pub async fn script(&self, body: &str) -> Value {
        self.session_cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": body, "args": [] })),
        )
        .await
    }

    /// Resizes the window.
    pub async fn resize(&self, width: u32, height: u32) {
        self.session_cmd(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    /// The browser's console messages since the last call (level and text), when the driver
    /// keeps them (chromedriver does, with `goog:loggingPrefs`).
    pub async fn console(&self) -> Vec<(String, String)> {
        let entries = self
            .try_send(
                reqwest::Method::POST,
                &format!("{}/se/log", self.session),
                Some(json!({ "type": "browser" })),
            )
            .await
            .unwrap_or(Value::Null);
        entries
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["level"].as_str().unwrap_or("").to_owned(),
                            e["message"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Saves a screenshot of the viewport as `target/dashboard-screenshots/NAME.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let encoded = self
            .session_cmd(reqwest::Method::GET, "/screenshot", None)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .expect("the screenshot is base64");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
        std::fs::create_dir_all(&self.shots).expect("screenshot dir");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Ends the session; the driver is stopped when the guard drops.
    pub async fn quit(mut self) {
        let session = std::mem::take(&mut self.session);
        if !session.is_empty() {
            let _ = self.try_send(reqwest::Method::DELETE, &session, None).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A test that panicked did not quit: end the session over a plain socket (no runtime
        // here), so Chromium exits with its driver instead of outliving the test.
        if !self.session.is_empty()
            && let Some(addr) = self.driver.strip_prefix("http://")
            && let Ok(mut s) = TcpStream::connect(addr)
        {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                s,
                "DELETE {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
                self.session
            );
            let _ = s.read_to_end(&mut Vec::new());
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `target/dashboard-screenshots` of this workspace (or of `CARGO_TARGET_DIR`).
fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("..")
                .join("target")
        });
    target.join("dashboard-screenshots")
}
