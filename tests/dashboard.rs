//! End to end: the dashboard in real headless Chromium, driven over the DevTools
//! protocol. A backend is stopped while traffic runs and its row must turn
//! down/failed within a few seconds; a screenshot is saved to
//! `target/test-artifacts/dashboard.png`. Under `ferrolb up` the page shows each
//! worker's pid and runs a rolling restart from its button
//! (`target/test-artifacts/dashboard-up.png`). With an `acme_certificate` (issued by
//! pebble), the page lists the certificate's names, issuer and expiry
//! (`target/test-artifacts/dashboard-acme.png`).
//!
//! Needs `/usr/bin/chromium` (Debian package `chromium`, installed by
//! `scripts/test.sh`). Without it the test fails rather than skips.

mod acme_support;
mod admin_support;
mod common;
mod up_support;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use admin_support::{wait_for, Backend};
use common::{fresh_temp_dir, http_get, Proxy};
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};
use up_support::Up;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Headless Chromium with a fresh profile; killed on drop.
struct Browser {
    child: Child,
    profile: PathBuf,
}

impl Browser {
    fn launch(url: &str) -> Browser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: the dashboard test needs Debian's chromium; run scripts/test.sh \
             (it installs it) or `apt-get install -y chromium`"
        );
        let profile = fresh_temp_dir("chromium");
        let child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=1360,760",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {CHROMIUM}: {e} (see scripts/test.sh)"));
        Browser { child, profile }
    }

    /// The DevTools port Chromium wrote to `DevToolsActivePort` in its profile.
    fn devtools_port(&mut self) -> u16 {
        let file = self.profile.join("DevToolsActivePort");
        let child = &mut self.child;
        wait_for(Duration::from_secs(30), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("chromium exited early: {status}");
            }
            std::fs::read_to_string(&file)
                .ok()?
                .lines()
                .next()?
                .trim()
                .parse()
                .ok()
        })
        .expect("chromium wrote DevToolsActivePort")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A DevTools session on one page.
struct Page {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Page {
    /// Attaches to the page whose URL contains `url_part`.
    fn attach(devtools: u16, url_part: &str) -> Page {
        let ws_url = wait_for(Duration::from_secs(20), || {
            let r = http_get(devtools, "/json/list", "127.0.0.1").ok()?;
            let list: Value = serde_json::from_slice(&r.body).ok()?;
            list.as_array()?
                .iter()
                .find(|t| {
                    t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.contains(url_part))
                })
                // Built from the id: Chromium derives the host of
                // `webSocketDebuggerUrl` from our Host header, which has no port.
                .and_then(|t| t["id"].as_str())
                .map(|id| format!("ws://127.0.0.1:{devtools}/devtools/page/{id}"))
        })
        .expect("the dashboard page target");
        let (ws, _) = tungstenite::connect(ws_url.as_str()).expect("DevTools websocket");
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
        }
        Page { ws, next_id: 1 }
    }

    /// Sends a command and returns its `result`.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(Message::text(msg)).expect("send");
        loop {
            let m = self.ws.read().expect("DevTools reply");
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(t.as_str()).expect("JSON from DevTools");
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    /// Starts counting the page's renders: each poll of `/status` replaces the
    /// contents of `#upstreams`, which a MutationObserver counts in
    /// `window.__renders` (reset to 0 here).
    fn count_renders(&mut self) {
        self.eval(
            "(() => { window.__renders = 0; if (!window.__observer) { \
               window.__observer = new MutationObserver(() => { window.__renders++; }); \
               window.__observer.observe(document.getElementById('upstreams'), {childList: true}); \
             } return true; })()",
        );
    }

    /// Waits (20 s at most) until the page has rendered `n` times since
    /// [`Page::count_renders`].
    fn wait_renders(&mut self, n: u64, what: &str) {
        let done = wait_for(Duration::from_secs(20), || {
            (self.eval("window.__renders").as_u64()? >= n).then_some(())
        });
        assert!(
            done.is_some(),
            "the dashboard did not render {n} times ({what}): {}",
            self.eval("window.__renders")
        );
    }

    fn state_of(&mut self, addr: &str) -> Option<String> {
        let v = self.eval(&format!(
            "(() => {{ const e = document.querySelector('[data-peer=\"{addr}\"]'); return e ? e.dataset.state : null; }})()"
        ));
        v.as_str().map(str::to_owned)
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[test]
fn dashboard_shows_stopped_backend_as_down() {
    let mut a = Backend::start();
    let b = Backend::start();
    let c = Backend::start();
    let conf = |listen: u16, admin: u16| {
        format!(
            "events {{}}\nhttp {{\n  access_log off;\n  ferrolb_admin 127.0.0.1:{admin};\n  \
             upstream myproject {{\n    server 127.0.0.1:{} max_fails=1 fail_timeout=30s;\n    \
             server 127.0.0.1:{} weight=2;\n    server 127.0.0.1:{} slow_start=60s;\n  }}\n  \
             server {{\n    listen 127.0.0.1:{listen};\n    location / {{ proxy_pass http://myproject; }}\n  }}\n}}\n",
            a.port, b.port, c.port
        )
    };
    let (proxy, [listen, admin]) = Proxy::start_on(|[listen, admin]| conf(listen, admin));

    // Steady traffic so the page has rates, latencies and sparklines to show (a
    // request every ~15 ms: pacing, not synchronisation).
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = http_get(listen, "/", "localhost");
                std::thread::sleep(Duration::from_millis(15));
            }
        })
    };

    let url = format!("http://127.0.0.1:{admin}/");
    let mut browser = Browser::launch(&url);
    let devtools = browser.devtools_port();
    let mut page = Page::attach(devtools, &format!("127.0.0.1:{admin}"));
    let a_addr = format!("127.0.0.1:{}", a.port);
    let b_addr = format!("127.0.0.1:{}", b.port);
    let up = wait_for(Duration::from_secs(20), || {
        (page.state_of(&a_addr).as_deref() == Some("up")).then_some(())
    });
    assert!(
        up.is_some(),
        "dashboard never showed {a_addr} as up\n{}",
        proxy.diagnostics()
    );
    // Let rate history build up for the sparklines: 6 more renders of the page.
    page.count_renders();
    page.wait_renders(6, "rate history for the sparklines");

    a.stop();
    let stopped = Instant::now();
    let seen = wait_for(Duration::from_secs(10), || {
        page.state_of(&a_addr)
            .filter(|s| ["down", "failed", "unhealthy"].contains(&s.as_str()))
    });
    let took = stopped.elapsed();
    let state = seen.unwrap_or_else(|| {
        panic!(
            "{a_addr} not shown as down 10 s after stopping it (state {:?})\n{}",
            page.state_of(&a_addr),
            proxy.diagnostics()
        )
    });
    // Traffic every ~15 ms makes a request fail on it at once; the page polls every
    // 500 ms, so 2 s leaves room for a slow machine's first failing request.
    assert!(
        took < Duration::from_secs(3),
        "took {took:?} to show {state}"
    );
    assert_eq!(page.state_of(&b_addr).as_deref(), Some("up"));

    // A couple more renders, so the screenshot shows the stop in the sparkline.
    page.count_renders();
    page.wait_renders(2, "the stop in the sparkline");
    let shot = page.call("Page.captureScreenshot", json!({"format": "png"}));
    let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    std::fs::write(dir.join("dashboard.png"), &png).expect("write screenshot");
    eprintln!(
        "{a_addr} shown as {state} {took:?} after stop; screenshot: {}",
        dir.join("dashboard.png").display()
    );

    stop.store(true, Ordering::Relaxed);
    let _ = traffic.join();
    drop(c);
}

/// Saves a screenshot of the page to `target/test-artifacts/NAME`; returns its path.
fn screenshot(page: &mut Page, name: &str) -> PathBuf {
    let shot = page.call("Page.captureScreenshot", json!({"format": "png"}));
    let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    std::fs::write(dir.join(name), &png).expect("write screenshot");
    dir.join(name)
}

/// The (port, pid) of each worker row the page shows.
fn shown_workers(page: &mut Page) -> Vec<(u16, Option<u32>)> {
    let v = page.eval(
        "Array.from(document.querySelectorAll('tr[data-worker]')).map(r => [Number(r.dataset.worker), r.dataset.pid])",
    );
    v.as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    (
                        r[0].as_u64().unwrap_or(0) as u16,
                        r[1].as_str().and_then(|p| p.parse().ok()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn dashboard_shows_up_workers_and_runs_a_rolling_restart() {
    let mut up = Up::start(2, &["--grace", "2"], &up_support::http_server_after(None));
    let mut before = up.wait_healthy(2, Duration::from_secs(30));
    before.sort();
    let expected: Vec<(u16, Option<u32>)> = before.iter().map(|&(p, pid)| (p, Some(pid))).collect();

    let url = format!("http://127.0.0.1:{}/", up.admin);
    let mut browser = Browser::launch(&url);
    let devtools = browser.devtools_port();
    let mut page = Page::attach(devtools, &format!("127.0.0.1:{}", up.admin));
    let shown = wait_for(Duration::from_secs(20), || {
        let mut w = shown_workers(&mut page);
        w.sort();
        (w == expected).then_some(w)
    });
    assert!(
        shown.is_some(),
        "the dashboard never showed the workers {expected:?} (it shows {:?})\n{}",
        shown_workers(&mut page),
        up.output()
    );
    // The live chart of the upstream draws its lines (from its second poll on).
    let drawn = wait_for(Duration::from_secs(10), || {
        (page
            .eval("document.querySelectorAll('svg[data-chart=\"app\"] polyline').length")
            .as_u64()?
            >= 1)
            .then_some(())
    });
    assert!(drawn.is_some(), "no chart lines for upstream app");

    // The button starts a rolling restart; the page shows its progress, then its end,
    // and new pids.
    page.eval("document.getElementById('rolling-restart').click(), true");
    let progress = wait_for(Duration::from_secs(30), || {
        let t = page.eval(
            "(() => { const e = document.getElementById('rolling-progress'); return e ? e.textContent : null; })()",
        );
        t.as_str()
            .filter(|t| t.contains("last rolling restart: 2 workers restarted"))
            .map(str::to_owned)
    });
    assert!(
        progress.is_some(),
        "no end of the rolling restart on the page\n{}",
        up.output()
    );
    let replaced = wait_for(Duration::from_secs(20), || {
        let w = shown_workers(&mut page);
        (w.len() == 2
            && w.iter()
                .all(|(port, pid)| pid.is_some() && !expected.contains(&(*port, *pid))))
        .then_some(w)
    });
    assert!(
        replaced.is_some(),
        "the page still shows old pids: {:?}\n{}",
        shown_workers(&mut page),
        up.output()
    );
    assert!(up
        .stdout()
        .contains("rolling restart done: 2 workers restarted"));
    let path = screenshot(&mut page, "dashboard-up.png");
    eprintln!(
        "workers shown, restarted from the page; screenshot: {}",
        path.display()
    );
    for (_, pid) in replaced.unwrap_or_default() {
        up.seen.extend(pid);
    }
}

#[test]
fn dashboard_shows_acme_certificates() {
    let http = common::free_port();
    let Some(pebble) = acme_support::Pebble::start(http, None) else {
        return;
    };
    let state = fresh_temp_dir("acme-state").join("acme_pebble");
    let (proxy, [_tls, admin]) = Proxy::start_on(|[tls, admin]| {
        acme_support::conf(&pebble, &state, "shop.test", tls, http, admin)
    });
    proxy.wait_log(
        0,
        "acme: certificate for \"shop.test\" issued",
        acme_support::LIMIT,
    );

    let url = format!("http://127.0.0.1:{admin}/");
    let mut browser = Browser::launch(&url);
    let devtools = browser.devtools_port();
    let mut page = Page::attach(devtools, &format!("127.0.0.1:{admin}"));
    let row = wait_for(Duration::from_secs(20), || {
        let v = page.eval(
            "(() => { const r = document.querySelector('tr[data-certificate]'); \
               return r ? [r.dataset.state, r.innerText] : null; })()",
        );
        let state = v[0].as_str()?.to_owned();
        let text = v[1].as_str()?.to_owned();
        Some((state, text))
    })
    .expect("a certificate row on the dashboard");
    assert_eq!(row.0, "valid", "{row:?}");
    assert!(
        row.1.contains("shop.test") && row.1.contains("pebble"),
        "{row:?}"
    );
    // The expiry: pebble's 5-year certificates, shown as a date and a countdown.
    let status: Value = serde_json::from_slice(
        &http_get(admin, "/status", "localhost")
            .expect("GET /status")
            .body,
    )
    .expect("status JSON");
    let not_after = status["certificates"][0]["not_after"]
        .as_i64()
        .expect("not_after");
    use chrono::Datelike;
    let year = chrono::DateTime::from_timestamp(not_after, 0)
        .expect("a date")
        .year();
    assert!(
        row.1.contains(&year.to_string()),
        "{row:?} (not_after {not_after})"
    );
    let shot = screenshot(&mut page, "dashboard-acme.png");
    eprintln!("screenshot: {}", shot.display());
}
