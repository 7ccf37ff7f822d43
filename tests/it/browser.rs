//! The job monitor in a real browser: Debian's headless Chromium driven through ChromeDriver
//! (the W3C WebDriver protocol, spoken here with a few JSON requests) against a real
//! `sluice server`. Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them).
//! Run alone: `cargo test --test it browser`. The job page's screenshot is saved to
//! `target/browser/job-page.png`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::server::{Server, start_release, token};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// ChromeDriver on a free port, with one headless Chromium session.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        for exe in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                Path::new(exe).exists(),
                "{exe} is missing: install Debian's chromium and chromium-driver (.ci/run does)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while http.get(format!("{base}/status")).send().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1100,1600",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let v: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {v}"))
            .to_string();
        let b = Browser {
            driver,
            base,
            session,
            http,
            _profile: profile,
        };
        // Finding an element waits for it (a page loading after a click) up to 10 s.
        b.cmd(
            reqwest::Method::POST,
            "/timeouts",
            Some(json!({ "implicit": 10_000 })),
        );
        b
    }

    fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut r = self.http.request(method, url);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let v: Value = r.send().unwrap().json().unwrap();
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url })));
    }

    fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None)
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The elements matching a CSS selector.
    fn all(&self, css: &str) -> Vec<String> {
        self.cmd(
            reqwest::Method::POST,
            "/elements",
            Some(json!({ "using": "css selector", "value": css })),
        )
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| e[ELEMENT].as_str().unwrap().to_string())
        .collect()
    }

    fn one(&self, css: &str) -> String {
        self.all(css)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no `{css}` on {}", self.url()))
    }

    fn click(&self, css: &str) {
        let e = self.one(css);
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        );
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.one(css);
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn text(&self, css: &str) -> String {
        let e = self.one(css);
        self.cmd(reqwest::Method::GET, &format!("/element/{e}/text"), None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn attribute(&self, css: &str, name: &str) -> Option<String> {
        let e = self.all(css).into_iter().next()?;
        self.cmd(
            reqwest::Method::GET,
            &format!("/element/{e}/attribute/{name}"),
            None,
        )
        .as_str()
        .map(str::to_string)
    }

    fn cookie(&self, name: &str) -> String {
        self.cmd(reqwest::Method::GET, &format!("/cookie/{name}"), None)["value"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn screenshot(&self, to: &Path) {
        use base64::Engine as _;
        let png = self.cmd(reqwest::Method::GET, "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, bytes).unwrap();
    }

    fn sign_in(&self, server: &Server, token: &str) {
        self.go(&format!("{}/", server.url));
        assert!(self.url().ends_with("/login"), "{}", self.url());
        self.type_into("#token", token);
        self.click("#token-form button");
        self.until("the page after signing in", |b| {
            !b.url().ends_with("/login") || !b.all(".error").is_empty()
        });
    }

    /// Waits until `ready` holds on the current page, for at most a minute.
    fn until(&self, what: &str, ready: impl Fn(&Browser) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready(self) {
            assert!(Instant::now() < deadline, "the page never showed {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

const PERMISSIONS: &str = "groups:\n  release-managers: [bob, carol]\n  ops: [dave]\nallow:\n  approve: [group:release-managers]\n  resume: [group:ops]\n  trap: [group:ops]\n  annotate: ['*']\n";

#[test]
fn a_person_approves_in_the_browser_and_watches_the_job_finish() {
    let home = crate::home();
    std::fs::write(home.path().join("permissions.yaml"), PERMISSIONS).unwrap();
    let (ann, bob, dave) = (
        token(home.path(), "ann"),
        token(home.path(), "bob"),
        token(home.path(), "dave"),
    );
    let server = Server::start(home.path());
    let job = start_release(&server, &ann, home.path(), "6.0");
    server.until(&job, &ann, |v| v["status"] == "waiting");

    let browser = Browser::start();
    // A wrong token is refused on the sign-in page.
    browser.sign_in(&server, "sluice_wrong");
    assert!(
        browser.text(".error").contains("unknown or revoked"),
        "{}",
        browser.text("main")
    );
    browser.sign_in(&server, &bob);
    assert!(browser.text("header").contains("Signed in as bob"));
    // The list shows the waiting job; its page shows the gate with its input and buttons.
    assert!(
        browser.text("#jobs").contains(&job),
        "{}",
        browser.text("main")
    );
    browser.one(&format!("a[href='/jobs/{job}']"));
    browser.go(&format!("{}/jobs/{job}", server.url));
    assert!(
        browser
            .text(".gate")
            .contains("promote web 6.0 to all of production?")
    );
    browser.click("select[name='input.window'] option[value='tonight']");
    browser.type_into("textarea[name='comment']", "canary is clean");
    browser.screenshot(&crate::jobs::root().join("target/browser/gate.png"));
    browser.click("button[value='approve']");
    // The page follows the job to its end without anyone reloading it.
    browser.until("the job succeed", |b| {
        b.attribute("#job-status", "data-status").as_deref() == Some("succeeded")
    });
    let decisions = browser.text("#decision-list");
    assert!(
        decisions.contains("bob decided approve at go-live: canary is clean"),
        "{decisions}"
    );
    browser.until("the log", |b| {
        b.text("#log")
            .contains("web 6.0 is live in production (window: tonight")
    });
    browser.screenshot(&crate::jobs::root().join("target/browser/job-page.png"));
    let (_, v) = server.get(&format!("/api/v1/jobs/{job}"), &ann);
    assert_eq!(v["status"], "succeeded");

    // dave may not approve: his page of a waiting job has no Approve button, and a forged
    // POST (his own session, the right CSRF token) is refused by the same checks.
    let second = start_release(&server, &ann, home.path(), "6.1");
    server.until(&second, &ann, |v| v["status"] == "waiting");
    browser.click("form[action='/logout'] button");
    browser.until("the sign-in page", |b| b.url().ends_with("/login"));
    browser.sign_in(&server, &dave);
    browser.go(&format!("{}/jobs/{second}", server.url));
    assert!(browser.all("button[value='approve']").is_empty());
    assert!(browser.text(".gate").contains("You may not decide here."));
    let cookie = format!("sluice_session={}", browser.cookie("sluice_session"));
    let csrf = browser
        .attribute("form[action='/logout'] input[name='csrf']", "value")
        .unwrap();
    let post = |form: &[(&str, &str)]| {
        Client::new()
            .post(format!("{}/jobs/{second}/decide", server.url))
            .header("cookie", &cookie)
            .form(form)
            .send()
            .unwrap()
    };
    let r = post(&[("decision", "approve"), ("csrf", &csrf)]);
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(
        r.text()
            .unwrap()
            .contains("dave may not approve; the permissions file allows group:release-managers")
    );
    // Without the CSRF token, or with another, nothing is even checked.
    let r = post(&[("decision", "approve")]);
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().unwrap().contains("CSRF token is missing or wrong"));
    let r = post(&[("decision", "approve"), ("csrf", "0000")]);
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The session cookie reads the API but changes nothing through it.
    let r = Client::new()
        .post(format!("{}/api/v1/jobs/{second}/decisions", server.url))
        .header("cookie", &cookie)
        .json(&json!({ "decision": "approve" }))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (_, v) = server.get(&format!("/api/v1/jobs/{second}"), &ann);
    assert_eq!(v["status"], "waiting", "nothing was decided");
    assert!(
        v["history"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["event"]["type"] != "decided")
    );
}
