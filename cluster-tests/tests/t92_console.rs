//! The operator console against real node processes.
//!
//! Invariants:
//! - in Debian's Chromium, an operator signs in with a token, creates a
//!   flag, sees a refused edit at its field, publishes, flips the kill
//!   switch and watches a real SDK instance converge on the new version,
//!   moves by keyboard, rolls back, evaluates, downloads the export, reads
//!   the audit log and the cluster; the browser makes no request to any
//!   other origin (`console-e2e/console.mjs`; screenshots of every page in
//!   `target/tmp/console-screenshots/`);
//! - the console hides what the caller's roles do not grant, and the API
//!   still refuses it when asked anyway; trusted-proxy identity signs in
//!   without a token;
//! - a state-changing form without the CSRF token, or from another origin,
//!   changes nothing; the session cookie is HttpOnly and SameSite=Strict;
//! - the flag list of an environment with 1,000 flags renders in well under
//!   100 ms of server time (asserted with a generous bound; the figure is
//!   printed).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use pulseplane_cluster_tests::{Cluster, TOKEN, wait_until};
use pulseplane_sdk::Client;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::json;

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("console-e2e")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// A browser-like client that follows no redirects.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The value of cookie `name` among a response's `Set-Cookie` headers,
/// and the whole header line.
fn set_cookie(headers: &HeaderMap, name: &str) -> Option<(String, String)> {
    headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|line| {
            let first = line.split(';').next()?;
            let (k, v) = first.split_once('=')?;
            (k.trim() == name).then(|| (v.to_owned(), line.to_owned()))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let script = e2e_dir().join("console.mjs");
    assert!(
        e2e_dir().join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run ./deploy/dev.sh test, or `npm ci` in {}",
        e2e_dir().display()
    );
    assert!(
        chromium().exists(),
        "{} is missing: run ./deploy/dev.sh test, or apt-get install chromium",
        chromium().display()
    );
    let mut c = Cluster::start(3).await;
    let leader = c.leader(Duration::from_secs(10)).await;
    c.create_env(leader, "prod").await;
    c.put_and_publish(leader, "prod", "base", &json!({"kind": "boolean"}))
        .await
        .unwrap();
    let urls: Vec<String> = (1..=3).map(|id| c.url(id)).collect();
    // A real SDK instance, long-polling node 2, reporting what it holds.
    let sdk = Client::builder("prod")
        .endpoints(vec![urls[1].clone()])
        .sdk_key(TOKEN)
        .instance_id("console-e2e-sdk")
        .poll_interval(Duration::from_secs(1))
        .long_poll(true)
        .start()
        .await
        .unwrap();
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let mut child = tokio::process::Command::new("node")
        .arg(&script)
        .current_dir(e2e_dir())
        .env("CONSOLE_URL", &urls[0])
        .env("TOKEN", TOKEN)
        .env("ENV", "prod")
        .env("SDK_INSTANCE", "console-e2e-sdk")
        .env("SHOTS", &shots)
        .env("CHROMIUM", chromium())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node (Node.js) runs");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut text = String::new();
        let mut err = String::new();
        let mut so = stdout;
        let mut se = stderr;
        let _ = so.read_to_string(&mut text).await;
        let _ = se.read_to_string(&mut err).await;
        (text, err)
    });
    let status = match tokio::time::timeout(Duration::from_secs(240), child.wait()).await {
        Ok(s) => s.unwrap(),
        Err(_) => {
            let _ = child.kill().await;
            panic!("the browser run took over 240 s");
        }
    };
    let (text, err) = out.await.unwrap();
    println!("{text}");
    eprintln!("{err}");
    assert!(
        status.success() && text.contains("CONSOLE_E2E ok"),
        "the browser run failed ({status}); screenshots in {}\n{text}\n{err}",
        shots.display()
    );
    let pngs = std::fs::read_dir(&shots)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "png"))
        })
        .count();
    assert!(pngs >= 12, "{pngs} screenshots");
    // The SDK instance holds what the console last published.
    let (_, env) = c
        .client
        .get(&urls[0], "/v1/environments/prod")
        .await
        .unwrap();
    let latest = env["version"].as_u64().unwrap();
    wait_until(
        Duration::from_secs(10),
        "the SDK on the latest version",
        || {
            let v = sdk.version();
            async move { (v == latest).then_some(()) }
        },
    )
    .await;
}

/// A console session: the cookies a browser would hold, and the trusted
/// proxy's identity header if any.
struct Session {
    http: reqwest::Client,
    base: String,
    user: Option<&'static str>,
    cookies: Vec<(String, String)>,
}

impl Session {
    fn new(base: &str, user: Option<&'static str>) -> Session {
        Session {
            http: http(),
            base: base.to_owned(),
            user,
            cookies: Vec::new(),
        }
    }

    fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(u) = self.user {
            h.insert("x-test-user", HeaderValue::from_static(u));
        }
        if !self.cookies.is_empty() {
            let line: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            h.insert(
                reqwest::header::COOKIE,
                HeaderValue::from_str(&line.join("; ")).unwrap(),
            );
        }
        h
    }

    fn keep(&mut self, r: &reqwest::Response) {
        for name in ["pp_csrf", "pp_session"] {
            if let Some((v, _)) = set_cookie(r.headers(), name) {
                self.cookies.retain(|(k, _)| k != name);
                if !v.is_empty() {
                    self.cookies.push((name.to_owned(), v));
                }
            }
        }
    }

    fn csrf(&self) -> String {
        self.cookies
            .iter()
            .find(|(k, _)| k == "pp_csrf")
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    async fn get(&mut self, path: &str) -> (u16, HeaderMap, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .headers(self.headers())
            .send()
            .await
            .unwrap();
        self.keep(&r);
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.text().await.unwrap())
    }

    async fn post(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        origin: Option<&str>,
    ) -> (u16, HeaderMap, String) {
        let mut h = self.headers();
        if let Some(o) = origin {
            h.insert("origin", HeaderValue::from_str(o).unwrap());
        }
        let body: String = form_body(fields);
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .headers(h)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        self.keep(&r);
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.text().await.unwrap())
    }
}

fn form_body(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            let enc = |s: &str| -> String {
                s.bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                            (b as char).to_string()
                        }
                        _ => format!("%{b:02X}"),
                    })
                    .collect()
            };
            format!("{}={}", enc(k), enc(v))
        })
        .collect::<Vec<_>>()
        .join("&")
}

async fn killed(c: &Cluster, flag: &str) -> bool {
    let (_, v) = c
        .client
        .get(
            &c.url(1),
            &format!("/v1/environments/prod/flags/{flag}?consistency=linearizable"),
        )
        .await
        .unwrap();
    v["killed"] == true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_csrf_and_sessions() {
    let c = Cluster::start_with(
        1,
        &[
            "--trusted-proxy-header=X-Test-User",
            "--trusted-proxy-cidr=127.0.0.0/8",
        ],
    )
    .await;
    let url = c.url(1);
    c.create_env(1, "prod").await;
    c.put_and_publish(1, "prod", "f", &json!({"kind": "boolean"}))
        .await
        .unwrap();
    for (role, perms) in [
        ("viewer", json!(["flag.read", "env.read"])),
        ("ops", json!(["flag.read", "env.read", "flag.kill"])),
    ] {
        let (s, v) = c
            .client
            .put(
                &url,
                &format!("/v1/roles/{role}"),
                &json!({"permissions": perms, "environments": ["prod"]}),
            )
            .await
            .unwrap();
        assert_eq!(s, 201, "{v}");
    }
    for (who, role) in [("vera", "viewer"), ("otto", "ops")] {
        let (s, v) = c
            .client
            .put(
                &url,
                &format!("/v1/bindings/{who}"),
                &json!({"roles": [role]}),
            )
            .await
            .unwrap();
        assert!(s == 201 || s == 200, "{v}");
    }

    // Nobody: sent to sign in.
    let mut anon = Session::new(&url, None);
    let (s, h, _) = anon.get("/console").await;
    assert_eq!(s, 303);
    assert_eq!(h["location"], "/console/sign-in");
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );

    // A viewer (trusted-proxy identity, no token) sees no kill switch, no
    // new-flag form, no publish; the API refuses the kill when posted anyway.
    let mut vera = Session::new(&url, Some("vera"));
    let (s, _, page) = vera.get("/console/env/prod").await;
    assert_eq!(s, 200, "{page}");
    assert!(
        page.contains("Flags in prod") && page.contains(">vera<"),
        "{page}"
    );
    assert!(!page.contains("aria-label=\"Kill f\""), "{page}");
    assert!(!page.contains("New flag"));
    let (s, _, editor) = vera.get("/console/env/prod/flags/f").await;
    assert_eq!(s, 200);
    assert!(editor.contains("<textarea id=\"json\"") && editor.contains(" disabled>"));
    assert!(!editor.contains("Save JSON"));
    let csrf = vera.csrf();
    let (s, _, page) = vera
        .post(
            "/console/env/prod/flags/f/kill",
            &[("csrf", &csrf), ("confirmed", "yes")],
            None,
        )
        .await;
    assert_eq!(s, 403, "{page}");
    assert!(page.contains("lacks flag.kill"), "{page}");
    assert!(!killed(&c, "f").await);

    // An operator holding flag.kill sees the switch.
    let mut otto = Session::new(&url, Some("otto"));
    let (_, _, page) = otto.get("/console/env/prod").await;
    assert!(page.contains("aria-label=\"Kill f\""), "{page}");
    let csrf = otto.csrf();
    assert_eq!(csrf.len(), 32);
    // Without the CSRF token, with a wrong one, or from another origin:
    // refused, nothing changes.
    for (fields, origin) in [
        (vec![("confirmed", "yes")], None),
        (
            vec![("csrf", "0".repeat(32).as_str()), ("confirmed", "yes")],
            None,
        ),
        (
            vec![("csrf", csrf.as_str()), ("confirmed", "yes")],
            Some("https://elsewhere.example"),
        ),
    ] {
        let (s, _, page) = otto
            .post("/console/env/prod/flags/f/kill", &fields, origin)
            .await;
        assert_eq!(s, 403, "{page}");
        assert!(page.contains("Form expired"));
    }
    assert!(!killed(&c, "f").await);
    // Posted without the page's script: a confirmation page first.
    let (s, _, page) = otto
        .post("/console/env/prod/flags/f/kill", &[("csrf", &csrf)], None)
        .await;
    assert_eq!(s, 200);
    assert!(page.contains("Please confirm") && page.contains("value=\"yes\""));
    assert!(!killed(&c, "f").await);
    let origin = url.clone();
    let (s, h, _) = otto
        .post(
            "/console/env/prod/flags/f/kill",
            &[("csrf", &csrf), ("confirmed", "yes")],
            Some(&origin),
        )
        .await;
    assert_eq!(s, 303);
    assert!(
        h["location"]
            .to_str()
            .unwrap()
            .starts_with("/console/env/prod?did=killed&flag=f&version=")
    );
    assert!(killed(&c, "f").await);
    // The audit log names the operator, not the console.
    let (_, audit) = c
        .client
        .get(&url, "/v1/audit?env=prod&subject=otto")
        .await
        .unwrap();
    assert_eq!(audit["items"][0]["action"], "kill", "{audit}");

    // Token sign-in: a wrong token is refused at the field; the right one
    // gives an HttpOnly, SameSite=Strict session cookie.
    let mut admin = Session::new(&url, None);
    let (s, _, page) = admin.get("/console/sign-in").await;
    assert_eq!(s, 200);
    assert!(page.contains("name=\"token\""));
    let csrf = admin.csrf();
    let (s, _, page) = admin
        .post(
            "/console/sign-in",
            &[("csrf", &csrf), ("token", "wrong")],
            None,
        )
        .await;
    assert_eq!(s, 401);
    assert!(page.contains("id=\"token-error\""));
    let (s, h, _) = admin
        .post(
            "/console/sign-in",
            &[("csrf", &csrf), ("token", TOKEN)],
            None,
        )
        .await;
    assert_eq!(s, 303);
    let (_, line) = set_cookie(&h, "pp_session").expect("a session cookie");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(line.contains(part), "{line}");
    }
    assert!(!line.contains("Secure"), "plain HTTP: {line}");
    let (s, _, page) = admin.get("/console").await;
    assert_eq!(s, 200);
    assert!(page.contains("href=\"/console/env/prod\""));
    let (s, _, page) = admin.get("/console/cluster").await;
    assert_eq!(s, 200);
    assert!(page.contains("Add a node"));
    // Otto may not read the cluster: the API's 403, shown as such.
    let (s, _, page) = otto.get("/console/cluster").await;
    assert_eq!(s, 403, "{page}");
    assert!(!page.contains("Add a node"));
    // Sign-out clears the cookie.
    let csrf = admin.csrf();
    let (s, h, _) = admin
        .post("/console/sign-out", &[("csrf", &csrf)], None)
        .await;
    assert_eq!(s, 303);
    assert!(
        set_cookie(&h, "pp_session")
            .unwrap()
            .1
            .contains("Max-Age=0")
    );
    let (s, _, _) = admin.get("/console").await;
    assert_eq!(s, 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flag_list_renders_1000_flags_quickly() {
    let c = Cluster::start(1).await;
    let url = c.url(1);
    c.create_env(1, "prod").await;
    let started = Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..8 {
        let client = c.client.clone();
        let url = url.clone();
        writers.spawn(async move {
            for i in (w..1000).step_by(8) {
                let key = format!("flag-{i:04}");
                let (s, v) = client
                    .put(
                        &url,
                        &format!("/v1/environments/prod/flags/{key}"),
                        &json!({"kind": "boolean", "description": format!("flag number {i}")}),
                    )
                    .await
                    .unwrap();
                assert!(s == 201 || s == 200, "{v}");
            }
        });
    }
    while let Some(r) = writers.join_next().await {
        r.unwrap();
    }
    let (s, v) = c
        .client
        .post(&url, "/v1/environments/prod/publish", &json!({}))
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    println!(
        "1,000 flags written and published in {:?}",
        started.elapsed()
    );

    let mut admin = Session::new(&url, None);
    admin.cookies.push(("pp_session".into(), TOKEN.into()));
    let mut timings = Vec::new();
    for _ in 0..10 {
        let (s, h, page) = admin.get("/console/env/prod").await;
        assert_eq!(s, 200);
        assert_eq!(page.matches("<tr data-search=").count(), 1000);
        timings.push(server_ms(&h));
    }
    for path in ["/console", "/console/env/prod/history", "/console/audit"] {
        let (s, h, _) = admin.get(path).await;
        assert_eq!(s, 200, "{path}");
        println!("{path}: {:.1} ms server time", server_ms(&h));
    }
    // For comparison: the API list the page is built from, as a client
    // sees it (request, JSON and loopback included).
    let t = Instant::now();
    let (s, _) = c
        .client
        .get(&url, "/v1/environments/prod/flags?limit=1000")
        .await
        .unwrap();
    assert_eq!(s, 200);
    println!(
        "GET /v1/environments/prod/flags?limit=1000: {:?} from the client",
        t.elapsed()
    );
    timings.sort_by(f64::total_cmp);
    let median = timings[timings.len() / 2];
    println!(
        "flag list with 1,000 flags: median {median:.1} ms, max {:.1} ms server time (10 renders)",
        timings[timings.len() - 1]
    );
    // Generous: this is a debug build on a shared machine.
    assert!(median < 1000.0, "median {median} ms");
}

/// The `Server-Timing: render;dur=...` figure, in milliseconds.
fn server_ms(h: &HeaderMap) -> f64 {
    let line = h["server-timing"].to_str().unwrap();
    line.split("dur=")
        .nth(1)
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("bad Server-Timing {line:?}"))
}
