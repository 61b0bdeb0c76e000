//! Headless Chromium driven over the DevTools protocol: just enough to load
//! a page, run JavaScript in it (to read the DOM and click) and take a
//! screenshot. One WebSocket to the browser, one page attached with a
//! flat session.
//!
//! Chromium is Debian's `chromium` package (`/usr/bin/chromium`). When it
//! is missing, [`Chromium::find_or_install`] installs it with apt-get (as
//! `.ci/run` does); only when that is impossible does the caller skip.

use crate::harness::wait_until;
use serde_json::{json, Value};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tungstenite::{Message, WebSocket};

/// Where Chromium may be.
const CANDIDATES: &[&str] = &[
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
];

/// A running headless Chromium with one page.
pub struct Chromium {
    child: Child,
    socket: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
    /// Events that arrived while waiting for a command's reply.
    events: Vec<Value>,
    _profile: tempfile::TempDir,
}

impl Chromium {
    /// The Chromium binary: `PGSHADOW_CHROMIUM`, a known path, or Debian's
    /// package installed now. `Err` says why there is none.
    pub fn find_or_install() -> Result<PathBuf, String> {
        if let Some(path) = std::env::var_os("PGSHADOW_CHROMIUM") {
            return Ok(PathBuf::from(path));
        }
        let found = || CANDIDATES.iter().map(Path::new).find(|p| p.exists());
        if let Some(path) = found() {
            return Ok(path.to_path_buf());
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || !Path::new("/usr/bin/apt-get").exists() {
            return Err("no Chromium found, and apt-get is not usable as this user".into());
        }
        eprintln!("Chromium not found: installing Debian's chromium package");
        let apt = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("apt-get: {e}"))
        };
        apt(&["update", "-qq"])?;
        let out = apt(&["install", "-y", "-qq", "chromium"])?;
        found().map(Path::to_path_buf).ok_or_else(|| {
            format!(
                "apt-get install chromium failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// Starts `binary` headless and opens a blank page.
    pub fn start(binary: &Path) -> Chromium {
        use std::os::unix::process::CommandExt;
        let profile = tempfile::tempdir().expect("profile dir");
        let child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--window-size=1400,1000",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so Drop ends its helpers with it.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        // Chromium writes the port it chose, and the browser's path, here.
        let active = profile.path().join("DevToolsActivePort");
        let (port, path) = wait_until(Duration::from_secs(30), || {
            let text = std::fs::read_to_string(&active).ok()?;
            let mut lines = text.lines();
            let port: u16 = lines.next()?.trim().parse().ok()?;
            Some((port, lines.next()?.trim().to_string()))
        })
        .expect("Chromium did not open its DevTools port within 30 s");
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to DevTools");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        let url = format!("ws://127.0.0.1:{port}{path}");
        let (socket, _) = tungstenite::client(url.as_str(), stream).expect("DevTools handshake");
        let mut browser = Chromium {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            events: Vec::new(),
            _profile: profile,
        };
        let target = browser
            .call("Target.createTarget", json!({ "url": "about:blank" }))
            .expect("create a page");
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .expect("attach to the page");
        browser.session = attached["sessionId"]
            .as_str()
            .expect("session id")
            .to_string();
        // Page events, for dialogs (prompt, alert).
        browser.call("Page.enable", json!({})).expect("Page.enable");
        browser
    }

    /// Sends one command (to the page once attached) and returns its
    /// result; events in between are kept for [`Chromium::wait_event`].
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.socket
            .send(Message::Text(message.to_string().into()))
            .map_err(|e| format!("{method}: send: {e}"))?;
        loop {
            let reply = self
                .socket
                .read()
                .map_err(|e| format!("{method}: read: {e}"))?;
            let Message::Text(text) = reply else { continue };
            let reply: Value =
                serde_json::from_str(text.as_str()).map_err(|e| format!("{method}: {e}"))?;
            if reply.get("id").is_none() && reply.get("method").is_some() {
                self.events.push(reply);
                continue;
            }
            if reply["id"] != id {
                continue;
            }
            if let Some(error) = reply.get("error") {
                return Err(format!("{method}: {error}"));
            }
            return Ok(reply["result"].clone());
        }
    }

    /// Evaluates `expression` in the page and returns its value (promises
    /// are awaited).
    pub fn eval(&mut self, expression: &str) -> Result<Value, String> {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        )?;
        if let Some(exception) = result.get("exceptionDetails") {
            return Err(format!("{expression}: {exception}"));
        }
        Ok(result["result"]["value"].clone())
    }

    /// Navigates to `url` and waits until the page has loaded.
    pub fn open(&mut self, url: &str) -> Result<(), String> {
        self.call("Page.navigate", json!({ "url": url }))?;
        let check = format!(
            "document.readyState === 'complete' && location.href === {}",
            json!(url)
        );
        self.wait_for(&check, Duration::from_secs(30))
            .map(|_| ())
            .map_err(|e| format!("{url} did not load: {e}"))
    }

    /// Polls `expression` until it is truthy (errors while a navigation
    /// replaces the page count as "not yet"), and returns its value.
    pub fn wait_for(&mut self, expression: &str, timeout: Duration) -> Result<Value, String> {
        let mut last = Value::Null;
        wait_until(timeout, || match self.eval(expression) {
            Ok(v) if !matches!(v, Value::Null | Value::Bool(false)) => Some(v),
            Ok(v) => {
                last = v;
                None
            }
            Err(e) => {
                last = Value::String(e);
                None
            }
        })
        .ok_or_else(|| format!("`{expression}` still not true after {timeout:?} (last: {last})"))
    }

    /// A PNG of the page as it is now.
    pub fn screenshot(&mut self, path: &Path) -> Result<(), String> {
        let shot = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        )?;
        let data = shot["data"].as_str().ok_or("no screenshot data")?;
        let png = decode_base64(data).ok_or("screenshot is not base64")?;
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        self.session.clear();
        let _ = self.call("Browser.close", json!({}));
        // SAFETY: kill has no memory-safety preconditions; the group is the
        // one this Chromium leads (started with process_group(0)).
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Standard base64 (with padding), as DevTools sends screenshots.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let n = chunk.len().saturating_sub(1);
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + n]);
    }
    Some(out)
}

#[test]
fn base64_decodes_with_and_without_padding() {
    assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
    assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
    assert_eq!(decode_base64("YWJj").unwrap(), b"abc");
    assert!(decode_base64("a*b=").is_none());
}
