//! A minimal WebDriver client (plain JSON over HTTP to chromedriver) for the browser and
//! perf tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{PWNED, request};

pub fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

/// chromedriver, stopped (killed by its own pid) when dropped.
struct Driver {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Session {
    driver: Driver,
    id: String,
}

fn wd(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Value {
    let bytes = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let r = request(
        addr,
        method,
        path,
        &[("Content-Type", "application/json")],
        &bytes,
    );
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    assert!(
        r.status < 300,
        "webdriver {method} {path}: {} {}",
        r.status,
        r.text()
    );
    v["value"].clone()
}

impl Session {
    pub fn start(chromium: &Path, chromedriver: &Path, profile: &Path) -> Session {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Driver {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::net::TcpStream::connect(driver.addr).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_string_lossy(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    "--disable-dev-shm-usage", "--window-size=1480,1000", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}});
        let v = wd(driver.addr, "POST", "/session", Some(&caps));
        let id = v["sessionId"].as_str().expect("session id").to_owned();
        Session { driver, id }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        wd(
            self.driver.addr,
            method,
            &format!("/session/{}{path}", self.id),
            body.as_ref(),
        )
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Runs `script` until it returns something other than null or false; a script that
    /// throws (the page is between two renders) counts as "not yet".
    pub fn wait(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        let guarded = format!("try {{ {script} }} catch (e) {{ return null; }}");
        loop {
            let v = self.js(&guarded);
            if !v.is_null() && v != Value::Bool(false) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn element(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .expect("element id")
            .to_owned()
    }

    /// Accepts the open `confirm()` dialog (waiting for it to appear).
    pub fn accept_alert(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = request(
                self.driver.addr,
                "POST",
                &format!("/session/{}/alert/accept", self.id),
                &[("Content-Type", "application/json")],
                b"{}",
            );
            if r.status < 300 {
                return;
            }
            assert!(Instant::now() < deadline, "no dialog to accept");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.cmd("POST", &format!("/element/{id}/clear"), Some(json!({})));
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    pub fn screenshot(&self, path: &Path) {
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64_decode(b64.as_str().expect("base64 png"));
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Asserts that no payload ran: it would set `window.__xss` or the title `pwned`, or
    /// leave an element with an event-handler attribute or a script in the page.
    pub fn assert_nothing_executed(&self, when: &str) {
        let v = self.js(
            "return {xss: typeof window.__xss, title: document.title, \
             handlers: document.querySelectorAll('main [onerror], main [onload], main [onclick]').length, \
             scripts: document.querySelectorAll('main script, main img, main iframe').length, \
             jsLinks: [...document.querySelectorAll('a[href]')].filter(a => /^\\s*javascript:/i.test(a.getAttribute('href'))).length}",
        );
        assert_eq!(v["xss"], "undefined", "{when}: a payload ran: {v}");
        assert_ne!(v["title"], PWNED, "{when}: a payload ran: {v}");
        assert_eq!(v["handlers"], 0, "{when}: {v}");
        assert_eq!(v["scripts"], 0, "{when}: {v}");
        assert_eq!(v["jsLinks"], 0, "{when}: {v}");
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = request(
            self.driver.addr,
            "DELETE",
            &format!("/session/{}", self.id),
            &[],
            b"",
        );
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).unwrap());
        }
    }
    out
}

pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Chromium and chromedriver, or `None` (after failing when `TRACECRAFT_REQUIRE_BROWSER=1`)
/// with the reason printed.
#[allow(clippy::print_stderr, clippy::disallowed_macros)] // the skip reason is printed
pub fn browser_or_skip(test: &str) -> Option<(PathBuf, PathBuf)> {
    match (
        find_binary(&["chromium", "chromium-browser", "google-chrome"]),
        find_binary(&["chromedriver"]),
    ) {
        (Some(c), Some(d)) => Some((c, d)),
        _ => {
            let reason = "chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)";
            assert!(
                std::env::var("TRACECRAFT_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "TRACECRAFT_REQUIRE_BROWSER=1 but {reason}"
            );
            eprintln!("SKIPPED {test}: {reason}");
            None
        }
    }
}
