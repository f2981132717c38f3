//! The standardized 5-step deployment workflow, run for real on this machine:
//!
//! 1. the ops agent serves a small page over HTTP on loopback and health-checks it
//!    over HTTP;
//! 2. the ops agent opens the URL in headless Chromium, only after the health check
//!    passed, recording the URL and launch time (its outputs notify QA);
//! 3. the QA agent saves a full-page PNG screenshot and verifies it (PNG magic
//!    bytes, size, page title, no error text);
//! 4. the QA agent writes a Markdown report of the evidence;
//! 5. the framework agent hands off to the development agents.
//!
//! Where no browser exists, the browser steps are recorded as skipped with the reason,
//! and the run still ends with a summary. Evidence goes to `deployment_workflow/` under
//! `$CARGO_TARGET_DIR` when it is set, else under `target/`; the browser profiles the
//! steps create there are removed when the example ends. Run with
//! `cargo run --example deployment_workflow`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use concord::agent::{Agent, AgentError, AgentHealth, WorkItem, WorkOutput};
use concord::coordinator::{Coordinator, EventKind};
use concord::workflow::{Executor, RunOutcome, StepChange, Timer, runbooks};
use concord::{AgentId, AgentProfile, Capability, Clock, Role, SystemClock, Timestamp};

// ----- what the agents really do: serve, check, browse, capture, document -----

/// The page the ops agent deploys.
const PAGE: &str = "<!doctype html><html><head><title>concord demo app</title>\
<style>body{font-family:sans-serif;margin:40px;background:#f4f6fb}\
h1{color:#1d3c78}.card{background:#fff;border-radius:8px;padding:24px;\
box-shadow:0 2px 6px #0002;max-width:640px}</style></head><body>\
<div class=\"card\"><h1>concord demo app</h1>\
<p>Deployed by the ops agent, checked by the QA agent.</p>\
<ul><li>health: <b>ok</b></li><li>version: 1.0.0</li></ul></div></body></html>";

/// Serves the page on loopback until the process ends; returns its URL.
fn serve() -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/", listener.local_addr()?);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = answer(stream);
        }
    });
    Ok(url)
}

fn answer(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    // Read the whole request head: closing with unread bytes would reset the
    // connection under the client.
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let request = String::from_utf8_lossy(&request);
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, kind, body) = match path {
        "/health" => ("200 OK", "text/plain", "ok".to_owned()),
        "/" | "/index.html" => ("200 OK", "text/html; charset=utf-8", PAGE.to_owned()),
        _ => ("404 Not Found", "text/plain", "not found".to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

/// A plain HTTP GET over loopback: status, body.
fn http_get(url: &str) -> Result<(u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http url: {url}"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = TcpStream::connect(host).map_err(|e| format!("connect {host}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    // One write: a request split over several segments could be half-read.
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad response from {url}"))?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Ok((status, body))
}

/// Chromium (or Chrome) on this machine, if any; `CONCORD_BROWSER` overrides.
fn find_browser() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CONCORD_BROWSER") {
        return Some(PathBuf::from(p));
    }
    let names = [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ];
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// Runs headless Chromium with `args` and waits at most a minute.
fn chromium(browser: &Path, profile: &Path, args: &[&str]) -> Result<std::process::Output, String> {
    let mut child = Command::new(browser)
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
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start {}: {e}", browser.display()))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().map_err(|e| e.to_string()),
            Ok(None) if started.elapsed() > Duration::from_secs(60) => {
                let _ = child.kill();
                return Err("the browser did not finish within 60 s".to_owned());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Checks a PNG file: the magic bytes, a non-trivial size, and the image's size from
/// its header.
fn check_png(path: &Path) -> Result<(u32, u32, u64), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() < 1024 {
        return Err(format!("{} is only {} bytes", path.display(), bytes.len()));
    }
    if &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        return Err(format!("{} is not a PNG", path.display()));
    }
    let width = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    let height = u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
    Ok((width, height, bytes.len() as u64))
}

// ----- the host's plumbing: a timer and a way to run blocking work -----

/// Runs blocking work (processes, sockets) on its own thread, so that an agent's
/// `execute` never blocks the executor.
async fn off_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = futures::channel::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.await {
        Ok(v) => v,
        Err(_) => panic!("the worker thread died"),
    }
}

/// The host's timer for a real-time run: sleeps on a thread.
#[derive(Debug)]
struct ThreadTimer;

#[concord::async_trait]
impl Timer for ThreadTimer {
    async fn sleep_until(&self, deadline: Timestamp) {
        let wait = deadline.duration_since(SystemClock.now());
        off_thread(move || std::thread::sleep(wait)).await;
    }
}

/// Where the example writes: `deployment_workflow/` in Cargo's target directory
/// (`$CARGO_TARGET_DIR` when set, as Cargo itself reads it, else `target/`).
fn output_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
        .join("deployment_workflow")
}

/// The browser profile (`--user-data-dir`) a step's agent uses under `out`.
fn browser_profile(out: &Path, agent: &str) -> PathBuf {
    out.join(format!("browser-profile-{agent}"))
}

/// Removes the browser profiles when dropped, however `main` ends: they are the
/// browser's scratch state (caches, a lock file), not evidence.
struct RemoveOnDrop(Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for dir in &self.0 {
            match std::fs::remove_dir_all(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => eprintln!("could not remove {}: {e}", dir.display()),
            }
        }
    }
}

// ----- the agents -----

/// The ops agent: deploys and health-checks the server, then opens the browser.
#[derive(Debug)]
struct Ops {
    browser: Option<PathBuf>,
    out: PathBuf,
}

/// The QA agent: screenshot, visual verification, documentation.
#[derive(Debug)]
struct Qa {
    out: PathBuf,
}

/// The framework agent: hands off to the development agents.
#[derive(Debug)]
struct Framework;

/// A failure of the environment (a port, a browser, a page still loading): the
/// runbook gives these steps a second attempt, which may pass.
fn flaky(e: String) -> Result<WorkOutput, AgentError> {
    Ok(WorkOutput::retryable_failure(e))
}

/// Work this agent does not do: another attempt would be refused the same way, so
/// the step fails at once.
fn refuse(e: String) -> Result<WorkOutput, AgentError> {
    Ok(WorkOutput::failure(e))
}

#[concord::async_trait]
impl Agent for Ops {
    fn id(&self) -> AgentId {
        AgentId::new(1)
    }

    async fn execute(&self, work: WorkItem) -> Result<WorkOutput, AgentError> {
        match work.kind() {
            "deploy" => {
                off_thread(|| {
                    let url = match serve() {
                        Ok(url) => url,
                        Err(e) => return flaky(format!("could not start the server: {e}")),
                    };
                    let started = Instant::now();
                    match http_get(&format!("{url}health")) {
                        Ok((200, body)) if body.trim() == "ok" => {
                            Ok(WorkOutput::success().with_output("url", url).with_output(
                                "health",
                                format!(
                                    "200 ok in {:.1} ms",
                                    started.elapsed().as_secs_f64() * 1e3
                                ),
                            ))
                        }
                        Ok((status, body)) => flaky(format!("health check: {status} {body}")),
                        Err(e) => flaky(format!("health check: {e}")),
                    }
                })
                .await
            }
            "browser" => {
                let Some(browser) = self.browser.clone() else {
                    return Ok(WorkOutput::skipped(
                        "no Chromium or Chrome on this machine: install the `chromium` \
                         package (or set CONCORD_BROWSER) to run the browser steps",
                    ));
                };
                let url = work.input("url").unwrap_or_default().to_owned();
                let profile = browser_profile(&self.out, "ops");
                off_thread(move || {
                    let launched_at = SystemClock.now();
                    let dom = chromium(&browser, &profile, &["--dump-dom", &url])?;
                    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
                    if !dom.contains("<title>concord demo app</title>") {
                        return Err(format!("the page at {url} did not load in the browser"));
                    }
                    Ok(WorkOutput::success()
                        .with_output("url", url)
                        .with_output("browser", browser.display().to_string())
                        .with_output("launched_at", launched_at.to_string()))
                })
                .await
                .or_else(flaky)
            }
            other => refuse(format!("ops does not do `{other}`")),
        }
    }

    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("ops-1.0"))
    }
}

#[concord::async_trait]
impl Agent for Qa {
    fn id(&self) -> AgentId {
        AgentId::new(2)
    }

    async fn execute(&self, work: WorkItem) -> Result<WorkOutput, AgentError> {
        let out = self.out.clone();
        match work.kind() {
            "screenshot" => {
                let url = work.input("url").unwrap_or_default().to_owned();
                let browser = PathBuf::from(work.input("browser").unwrap_or_default());
                off_thread(move || {
                    let png = out.join("deployment.png");
                    let _ = std::fs::remove_file(&png);
                    let profile = browser_profile(&out, "qa");
                    let shot = format!("--screenshot={}", png.display());
                    chromium(&browser, &profile, &["--window-size=1280,900", &shot, &url])?;
                    let (w, h, size) = check_png(&png)?;
                    let dom = chromium(&browser, &profile, &["--dump-dom", &url])?;
                    let dom = String::from_utf8_lossy(&dom.stdout).to_lowercase();
                    if !dom.contains("concord demo app") {
                        return Err("visual check: the page title is missing".to_owned());
                    }
                    if dom.contains("error") || dom.contains("exception") {
                        return Err("visual check: the page shows an error".to_owned());
                    }
                    Ok(WorkOutput::success()
                        .with_output("screenshot", png.display().to_string())
                        .with_output(
                            "verification",
                            format!("PNG {w}x{h}, {size} bytes; title present; no error text"),
                        ))
                })
                .await
                .or_else(flaky)
            }
            "documentation" => {
                let inputs = work.inputs().clone();
                off_thread(move || {
                    let report = out.join("deployment-report.md");
                    let get = |k: &str| inputs.get(k).map_or("(not available)", String::as_str);
                    let text = format!(
                        "# Deployment report\n\n\
                         | evidence | value |\n|---|---|\n\
                         | URL | {} |\n| health check | {} |\n| browser launched at | {} |\n\
                         | screenshot | {} |\n| visual verification | {} |\n| written at | {} |\n",
                        get("url"),
                        get("health"),
                        get("launched_at"),
                        get("screenshot"),
                        get("verification"),
                        SystemClock.now(),
                    );
                    std::fs::write(&report, text)
                        .map(|()| {
                            WorkOutput::success()
                                .with_output("report", report.display().to_string())
                        })
                        .map_err(|e| format!("{}: {e}", report.display()))
                })
                .await
                .or_else(flaky)
            }
            other => refuse(format!("qa does not do `{other}`")),
        }
    }

    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("qa-1.0"))
    }
}

#[concord::async_trait]
impl Agent for Framework {
    fn id(&self) -> AgentId {
        AgentId::new(3)
    }

    async fn execute(&self, work: WorkItem) -> Result<WorkOutput, AgentError> {
        Ok(WorkOutput::success()
            .with_output("handed_off_to", "development agents")
            .with_output("report", work.input("report").unwrap_or_default()))
    }

    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("framework-1.0"))
    }
}

fn profile(id: u64, name: &str, role: &str, caps: &[&str]) -> AgentProfile {
    let mut p = AgentProfile::new(AgentId::new(id), name)
        .with_role(Role::new(role).expect("valid role"))
        .with_capacity("cpu=4,memory=8Gi".parse().expect("valid capacity"))
        .with_max_tasks(2);
    for c in caps {
        p = p.with_capability(Capability::new(c).expect("valid capability"));
    }
    p
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = output_dir();
    std::fs::create_dir_all(&out)?;
    let _profiles = RemoveOnDrop(vec![
        browser_profile(&out, "ops"),
        browser_profile(&out, "qa"),
    ]);
    let browser = find_browser();
    match &browser {
        Some(b) => println!("browser: {}", b.display()),
        None => println!("browser: none found; the browser steps will be recorded as skipped"),
    }

    // The coordinator with its defaults: it analyzes each step, assigns it to
    // an agent in the right role, checks the policies and allocates its resources.
    let coordinator = Arc::new(Coordinator::builder().clock(SystemClock).build());
    coordinator.register_agent(profile(
        1,
        "ops-agent",
        "ops",
        &["deploy", "health_check", "browser"],
    ))?;
    coordinator.register_agent(profile(
        2,
        "qa-agent",
        "qa",
        &["screenshot", "documentation"],
    ))?;
    coordinator.register_agent(profile(3, "framework", "framework", &["handoff"]))?;
    let names = [(1, "ops-agent"), (2, "qa-agent"), (3, "framework")];

    let executor = Executor::new(Arc::clone(&coordinator), ThreadTimer)
        .with_agent(Arc::new(Ops {
            browser,
            out: out.clone(),
        }))
        .with_agent(Arc::new(Qa { out: out.clone() }))
        .with_agent(Arc::new(Framework));
    let workflow = runbooks::deployment();
    println!("running `{}` ({} steps)\n", workflow.name(), workflow.len());
    let run = futures::executor::block_on(executor.run(&workflow, "deployment-1", 42))?;

    // Each step with its agent, timestamps and evidence, from the run's history.
    let t0 = run
        .history()
        .first()
        .map(|e| e.at)
        .unwrap_or(Timestamp::EPOCH);
    let since = |t: Timestamp| format!("+{:>7.1} ms", t.duration_since(t0).as_secs_f64() * 1e3);
    for (step, spec) in workflow.steps() {
        let name = spec.name();
        let agent = run
            .agent(step)
            .and_then(|a| names.iter().find(|(id, _)| *id == a.get()))
            .map_or("-", |(_, n)| *n);
        println!(
            "{}. {:<15} {:<10} by {:<10} attempts {}",
            step.index() + 1,
            name,
            run.status(step).expect("a step of this run").to_string(),
            agent,
            run.attempts(step).unwrap_or(0)
        );
        for e in run
            .history()
            .iter()
            .filter(|e| run.name(e.step) == Some(name))
        {
            match &e.change {
                StepChange::Ready => continue,
                // The outputs are listed below as evidence.
                StepChange::Succeeded { .. } => println!("     {} succeeded", since(e.at)),
                change => println!("     {} {change}", since(e.at)),
            }
        }
        if let Some(outputs) = run.outputs(step) {
            for (k, v) in outputs {
                println!("     evidence {k}: {v}");
            }
        }
    }

    let policy_events = coordinator
        .drain_events()
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::TaskAssigned { .. }))
        .count();
    let outcome = run.outcome();
    println!(
        "\nrun `deployment-1`: {} in {:.0} ms; {policy_events} assignments journaled; evidence in {}",
        outcome.expect("the executor returns finished runs"),
        concord::workflow::run_duration(&run).as_secs_f64() * 1e3,
        out.display()
    );
    if outcome == Some(RunOutcome::Failed) {
        return Err("the deployment workflow failed (see the steps above)".into());
    }
    Ok(())
}
