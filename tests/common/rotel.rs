//! Runs the real `rotel` OTLP collector (`rotel-agent`) as a child process for
//! interoperability tests.
//!
//! The binary ships inside the `rotel` PyPI package (`pip install rotel`) as
//! `<site-packages>/rotel/rotel-agent`; `.ci/run` installs it and exports its
//! path as `ROTEL_AGENT`. Without `ROTEL_AGENT`, `rotel-agent` is looked up on
//! `PATH`.
//!
//! rotel is started in the foreground (no `--daemon`, so it writes no pid file),
//! receives OTLP/HTTP and OTLP/gRPC on free loopback ports and forwards logs
//! with its `otlp` exporter over OTLP/HTTP protobuf to `<forward_to>/v1/logs`
//! ([`Rotel::start_forwarding_to`]), or drops them ([`Rotel::start_blackhole`]).
//!
//! The one rotel launcher of the repository: the tests include it as `tests/common/rotel.rs`,
//! the benchmark harness (`bench/src/throughput.rs`) through `#[path]`.
//! Note: rotel's HTTP exporter always sends `Content-Encoding: gzip` bodies
//! (the `--otlp-exporter-compression none` flag is ignored by the version
//! tested, 0.0.1-alpha10), so the receiving end must gunzip.
//!
//! For outage tests, [`Rotel::kill`] (SIGKILL, a crash) or [`Rotel::terminate`] (SIGTERM, an
//! orderly stop) take it down and [`Rotel::restart`] brings it back on the same ports.

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long to wait for rotel to accept connections on its ports.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `Drop` waits after SIGTERM before it sends SIGKILL.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// rotel's batch timeout: logs are forwarded about this long (plus ~10 ms)
/// after they arrive. rotel's default is 200ms.
const BATCH_TIMEOUT: &str = "10ms";
/// Attempts to start rotel when a picked port was taken in the meantime.
const START_ATTEMPTS: usize = 3;

static INSTANCE: AtomicUsize = AtomicUsize::new(0);

/// A running `rotel-agent` child process; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Rotel {
    child: Child,
    log_path: PathBuf,
    binary: PathBuf,
    /// rotel's exporter arguments: forwarding, or the black hole.
    exporter: Vec<String>,
    http_port: u16,
    grpc_port: u16,
    /// OTLP/HTTP receiver base URL, e.g. `http://127.0.0.1:4318`; logs go to
    /// `{http_endpoint}/v1/logs`.
    pub http_endpoint: String,
    /// OTLP/gRPC receiver URL, e.g. `http://127.0.0.1:4317`.
    pub grpc_endpoint: String,
}

impl Rotel {
    /// Starts rotel-agent forwarding logs over OTLP/HTTP protobuf to `forward_to` (a base URL like
    /// "http://127.0.0.1:1234"; rotel appends `/v1/logs`).
    /// Binary: env ROTEL_AGENT if set, else `rotel-agent` on PATH. Returns Err with a clear message
    /// if not found.
    pub fn start_forwarding_to(forward_to: &str) -> Result<Rotel, String> {
        let forward_to = forward_to.trim_end_matches('/');
        Self::start_with(
            [
                "--exporter",
                "otlp",
                "--otlp-exporter-endpoint",
                forward_to,
                "--otlp-exporter-protocol",
                "http",
            ]
            .map(str::to_owned)
            .to_vec(),
        )
    }

    /// Starts rotel-agent with its `blackhole` exporter: it takes every request and forwards
    /// nothing (what the throughput benchmarks measure against).
    pub fn start_blackhole() -> Result<Rotel, String> {
        Self::start_with(vec!["--exporter".to_owned(), "blackhole".to_owned()])
    }

    fn start_with(exporter: Vec<String>) -> Result<Rotel, String> {
        let binary = find_binary()?;
        let mut last_err = String::new();
        for _ in 0..START_ATTEMPTS {
            let (http_port, grpc_port) = two_free_ports()?;
            let log = log_path();
            let started = start_once(&binary, &exporter, http_port, grpc_port, &log);
            if started.is_err() {
                let _ = std::fs::remove_file(&log);
            }
            match started {
                Ok(rotel) => return Ok(rotel),
                // Another process grabbed one of the ports between our probe and rotel's bind.
                Err(e) if e.contains("Address already in use") => last_err = e,
                Err(e) => return Err(e),
            }
        }
        Err(last_err)
    }

    /// The receiver URL for `protocol`: gRPC's, or the OTLP/HTTP base URL.
    pub fn endpoint(&self, protocol: zenml_otel::Protocol) -> String {
        match protocol {
            zenml_otel::Protocol::Grpc => self.grpc_endpoint.clone(),
            _ => self.http_endpoint.clone(),
        }
    }

    /// Everything rotel printed so far (stdout and stderr), for failing tests to show.
    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }

    /// The file rotel's stdout and stderr go to.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The OS process id of the rotel-agent child.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills rotel with SIGKILL, as a crash would: it forwards nothing more (what it had
    /// accepted but not yet forwarded is lost with it), its ports refuse connections, and
    /// open connections are reset. Returns once the process is gone. Idempotent.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops rotel with SIGTERM, as an orchestrator would: it stops listening, forwards the
    /// batch it holds and exits. Returns once the process is gone (SIGKILL after
    /// `SHUTDOWN_TIMEOUT`).
    pub fn terminate(&mut self) {
        stop(&mut self.child);
    }

    /// Whether the rotel process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Starts rotel again — after [`kill`](Self::kill) or [`terminate`](Self::terminate), or
    /// stopping it first (SIGTERM) if it still runs — on the same ports, forwarding to the same
    /// place, appending to the same log. Returns once both ports accept connections.
    ///
    /// The ports may still be held for a moment by the old process' sockets, so binding is
    /// retried for up to `STARTUP_TIMEOUT`.
    pub fn restart(&mut self) -> Result<(), String> {
        stop(&mut self.child);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            match start_once(
                &self.binary,
                &self.exporter,
                self.http_port,
                self.grpc_port,
                &self.log_path,
            ) {
                Ok(mut started) => {
                    // Take over the new child; `started` must not stop it on drop.
                    std::mem::swap(&mut self.child, &mut started.child);
                    started.log_path = PathBuf::new();
                    return Ok(());
                }
                Err(e) if e.contains("Address already in use") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(format!("restarting rotel-agent: {e}")),
            }
        }
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        stop(&mut self.child);
        // Keep the log of a failing (panicking) test for inspection.
        if !std::thread::panicking() && !self.log_path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.log_path);
        }
    }
}

/// Starts rotel on the given ports, appending its output to `log_path`.
fn start_once(
    binary: &Path,
    exporter: &[String],
    http_port: u16,
    grpc_port: u16,
    log_path: &Path,
) -> Result<Rotel, String> {
    let log_path = log_path.to_path_buf();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("cannot create rotel log file {}: {e}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("cannot clone rotel log file handle: {e}"))?;

    let mut cmd = Command::new(binary);
    cmd.arg("start")
        .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http_port}")])
        .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc_port}")])
        .args(exporter)
        .args(["--batch-timeout", BATCH_TIMEOUT])
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        // Plain text log without ANSI colours.
        .env("NO_COLOR", "1");
    // rotel reads every option from ROTEL_* variables too (ROTEL_DAEMON=true would make
    // it fork away from us); start it from a clean slate.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ROTEL_") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot spawn {}: {e}", binary.display()))?;

    let http_addr = SocketAddr::from(([127, 0, 0, 1], http_port));
    let grpc_addr = SocketAddr::from(([127, 0, 0, 1], grpc_port));
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let output = read_log(&log_path);
                return Err(format!(
                    "rotel-agent ({}) exited early with {status}; its output:\n{output}",
                    binary.display()
                ));
            }
            Ok(None) => {}
            Err(e) => {
                stop(&mut child);
                return Err(format!("cannot poll rotel-agent child: {e}"));
            }
        }
        if accepts(http_addr) && accepts(grpc_addr) {
            return Ok(Rotel {
                child,
                log_path,
                binary: binary.to_path_buf(),
                exporter: exporter.to_vec(),
                http_port,
                grpc_port,
                http_endpoint: format!("http://{http_addr}"),
                grpc_endpoint: format!("http://{grpc_addr}"),
            });
        }
        if Instant::now() >= deadline {
            stop(&mut child);
            return Err(format!(
                "rotel-agent did not accept connections on {http_addr} and {grpc_addr} within \
                 {STARTUP_TIMEOUT:?}; its output ({}):\n{}",
                log_path.display(),
                read_log(&log_path)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The rotel-agent binary: `ROTEL_AGENT` if set, else `rotel-agent` on `PATH`.
pub fn find_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("ROTEL_AGENT").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "ROTEL_AGENT is set to {}, which is not a file; it should point to the \
                 rotel-agent binary inside the `rotel` Python package (see .ci/run)",
                path.display()
            ))
        };
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .map(|dir| dir.join("rotel-agent"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            "rotel-agent not found: set ROTEL_AGENT to its path or put it on PATH. It ships in \
             the `rotel` PyPI package: `pip install rotel`, then ROTEL_AGENT=\"$(python3 -c \
             'import rotel,os;print(os.path.join(os.path.dirname(rotel.__file__), \
             \"rotel-agent\"))')\" (.ci/run does this)"
                .to_string()
        })
}

/// Two distinct free loopback ports: both listeners are held until both are picked.
fn two_free_ports() -> Result<(u16, u16), String> {
    let bind = || {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| Ok((l.local_addr()?.port(), l)))
            .map_err(|e| format!("cannot bind a free port on 127.0.0.1: {e}"))
    };
    let (first, l1) = bind()?;
    let (second, l2) = bind()?;
    drop((l1, l2));
    Ok((first, second))
}

fn log_path() -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "zenml-otel-rotel-{}-{}-{nanos}.log",
        std::process::id(),
        INSTANCE.fetch_add(1, Ordering::Relaxed)
    ))
}

fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

fn read_log(path: &Path) -> String {
    let mut bytes = Vec::new();
    match File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)) {
        Ok(_) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("<cannot read rotel log {}: {e}>", path.display()),
    }
}

/// Stops the child: SIGTERM first (rotel then flushes its pending batch and
/// exits, normally within milliseconds), SIGKILL if it is still running after
/// `SHUTDOWN_TIMEOUT`; always reaps it.
fn stop(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if terminate(child.id()) {
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => break,
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends SIGTERM to `pid` (std has no API for it, so via `kill(1)`).
#[cfg(unix)]
fn terminate(pid: u32) -> bool {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn terminate(_pid: u32) -> bool {
    false
}
