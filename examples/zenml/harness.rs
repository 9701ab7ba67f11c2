//! A throw-away local ZenML project: its own config directory (so nothing touches the user's
//! ZenML), analytics off, the venv's `zenml` CLI, and a way to run a pipeline file in it.
//! Shared by the `zenml-pipeline` example and tests/zenml.rs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use zenml_otel::handover;
use zenml_otel::testing::ReceivedRecord;

/// The repository, for `python/` and the pipeline files.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's python: `ZENML_OTEL_PYTHON`, else the one `examples/zenml/run.sh` makes.
pub fn python() -> Result<PathBuf, String> {
    let python = std::env::var_os("ZENML_OTEL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/zenml-venv/bin/python"));
    if python.exists() {
        Ok(python)
    } else {
        Err(format!(
            "no ZenML venv python at {}: run `bash examples/zenml/run.sh` once (it installs \
             zenml[local,server]==0.98.0 there), or set ZENML_OTEL_PYTHON",
            python.display()
        ))
    }
}

/// A sibling binary of the running one, built by cargo as an example (`zenml-step`).
pub fn example_binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // Examples live in target/<profile>/examples; test binaries in target/<profile>/deps.
    let profile_dir = exe
        .ancestors()
        .find(|dir| dir.join("examples").is_dir() && dir.join("deps").is_dir())
        .ok_or_else(|| format!("no target directory above {}", exe.display()))?;
    let binary = profile_dir.join("examples").join(name);
    if binary.exists() {
        Ok(binary)
    } else {
        Err(format!(
            "{} is not built: run `cargo build --example {name}`",
            binary.display()
        ))
    }
}

/// A ZenML project in a temporary directory, removed on drop.
pub struct Project {
    root: PathBuf,
    python: PathBuf,
}

impl Project {
    /// Creates the directories and runs `zenml init`.
    pub fn init(python: PathBuf) -> Result<Self, String> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "zenml-otel-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(root.join("config")).map_err(|e| e.to_string())?;
        let project = Self { root, python };
        project.zenml(&["init"])?;
        Ok(project)
    }

    /// The project directory: pipeline files must live under it.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Registers an `otel` log store exporting to `endpoint` and a stack with it, made active.
    pub fn use_otel_stack(&self, endpoint: &str, service_name: &str) -> Result<(), String> {
        self.zenml(&[
            "log-store",
            "register",
            "otel_logs",
            "--flavor",
            "otel",
            &format!("--service_name={service_name}"),
            &format!("--endpoint={endpoint}"),
        ])?;
        self.zenml(&[
            "stack",
            "register",
            "otel_stack",
            "-o",
            "default",
            "-a",
            "default",
            "-l",
            "otel_logs",
            "--set",
        ])
    }

    /// A stack without a log store, made active.
    pub fn use_plain_stack(&self) -> Result<(), String> {
        self.zenml(&[
            "stack",
            "register",
            "plain_stack",
            "-o",
            "default",
            "-a",
            "default",
            "--set",
        ])
    }

    /// Runs the `zenml` CLI; fails with its output when it does.
    pub fn zenml(&self, args: &[&str]) -> Result<(), String> {
        let zenml = self.python.with_file_name("zenml");
        let output = self.command(&zenml).args(args).output();
        checked(&format!("zenml {}", args.join(" ")), output).map(drop)
    }

    /// Copies `file` into the project and runs it with the venv's python, `env` added.
    pub fn run_pipeline(&self, file: &Path, env: &[(&str, &Path)]) -> Result<Output, String> {
        self.run_python(file, &[], env)
    }

    /// Copies `file` into the project and runs it with the venv's python, `args` and `env`
    /// added; fails with its output when it does.
    pub fn run_python(
        &self,
        file: &Path,
        args: &[&str],
        env: &[(&str, &Path)],
    ) -> Result<Output, String> {
        let name = file.file_name().ok_or("no file name")?;
        let copy = self.root.join(name);
        std::fs::copy(file, &copy).map_err(|e| format!("copy {}: {e}", file.display()))?;
        let mut command = self.command(&self.python);
        command.arg(&copy).args(args);
        // After `command`'s clean slate, so a caller may set a handover variable on purpose.
        for (name, value) in env {
            command.env(name, value);
        }
        let started = Instant::now();
        let output = checked(
            &format!("python {}", name.to_string_lossy()),
            command.output(),
        );
        eprintln!(
            "{} ran in {:.1?}",
            name.to_string_lossy(),
            started.elapsed()
        );
        output
    }

    /// A command in the project's environment: its own ZenML config, analytics off, the
    /// helper module importable, and no handover left over from a step above us.
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(&self.root)
            .env("ZENML_CONFIG_PATH", self.root.join("config"))
            .env("ZENML_ANALYTICS_OPT_IN", "false")
            .env("ZENML_ENABLE_RICH_TRACEBACK", "false")
            .env("PYTHONPATH", repo().join("python").join("src"))
            .env("PYTHONDONTWRITEBYTECODE", "1");
        for name in handover::ALL {
            command.env_remove(name);
        }
        command
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn checked(what: &str, output: std::io::Result<Output>) -> Result<Output, String> {
    let output = output.map_err(|e| format!("{what}: cannot start: {e}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The `PIPELINE_RUN_ID=<uuid>` a pipeline file printed (examples/zenml/pipeline.py does).
pub fn run_id(output: &Output) -> Result<String, String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("PIPELINE_RUN_ID="))
        .map(|id| id.trim().to_string())
        .ok_or_else(|| "the pipeline printed no PIPELINE_RUN_ID=".to_string())
}

/// The lines a pipeline printed on its console from "Step `step` has started" to its end, as
/// a terminal shows them (colours left out).
pub fn step_console(output: &Output, step: &str) -> String {
    let text = String::from_utf8_lossy(&output.stdout);
    let plain = strip_colours(&text);
    let lines: Vec<&str> = plain.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.contains(&format!("Step {step} has started")));
    let end = lines
        .iter()
        .position(|l| l.contains(&format!("Step {step} has finished")));
    match (start, end) {
        (Some(start), Some(end)) if start <= end => lines[start..=end].join("\n") + "\n",
        _ => plain,
    }
}

/// `text` without ANSI colour sequences (`ESC [ … m`).
fn strip_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

/// Every record received, once no more have arrived for half a second (at most 10 s).
pub fn settled(receiver: &zenml_otel::testing::OtlpReceiver) -> Vec<ReceivedRecord> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = receiver.record_count();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = receiver.record_count();
        if now == seen || Instant::now() > deadline {
            return receiver.records();
        }
        seen = now;
    }
}

/// `telemetry.sdk.language` of the record's resource: `python` for ZenML's, `rust` for ours.
pub fn language(record: &ReceivedRecord) -> String {
    record
        .resource_attr("telemetry.sdk.language")
        .unwrap_or_default()
}

/// What a backend returns for `zenml.log.id = log_id`: those records, oldest first.
pub fn step_logs<'a>(records: &'a [ReceivedRecord], log_id: &str) -> Vec<&'a ReceivedRecord> {
    let mut logs: Vec<_> = records
        .iter()
        .filter(|r| r.attr_str("zenml.log.id").as_deref() == Some(log_id))
        .collect();
    logs.sort_by_key(|r| r.record.time_unix_nano);
    logs
}

/// One line per record: time (UTC), severity, language, body.
pub fn print_logs(logs: &[&ReceivedRecord]) {
    for record in logs {
        let nanos = record.record.time_unix_nano;
        let secs = nanos / 1_000_000_000;
        println!(
            "{:02}:{:02}:{:02}.{:03}  {:<5}  {:<6}  {}",
            secs / 3600 % 24,
            secs / 60 % 60,
            secs % 60,
            nanos / 1_000_000 % 1000,
            record.record.severity_text,
            language(record),
            record.body().unwrap_or_default()
        );
    }
}
