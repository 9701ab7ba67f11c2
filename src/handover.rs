//! The handover from a ZenML step to a program it starts.
//!
//! ZenML sets no environment variable with a step's ids for the processes the step starts, so
//! this crate defines its own. `run_rust_step` (the `zenml_otel` package in `python/`) sets
//! them from the step context; [`ZenmlOtelLayer::new`](crate::ZenmlOtelLayer::new) reads them,
//! and every record outside the program's own `zenml.*` spans then belongs to that step (spans
//! still override per field). Anyone starting the program another way can set them by hand.
//!
//! | variable | becomes |
//! |---|---|
//! | [`PIPELINE_RUN_ID`] | resource `zenml.pipeline_run_id` and record `zenml.pipeline.run.id` |
//! | [`STEP_RUN_ID`] | resource `zenml.step_id` and record `zenml.step.run.id` |
//! | [`LOG_SOURCE`] | resource `zenml.source` and record `zenml.log.source` |
//! | [`LOG_ID`] | record `zenml.log.id`: the step's logs entry, what ZenML finds logs by |
//! | [`PIPELINE_RUN_NAME`], [`STEP_RUN_NAME`] | record `zenml.pipeline.run.name`, `zenml.step.run.name` |
//! | [`PIPELINE_ID`], [`PIPELINE_NAME`] | record `zenml.pipeline.id`, `zenml.pipeline.name` |
//! | [`PROJECT_ID`], [`PROJECT_NAME`] | record `zenml.project.id`, `zenml.project.name` |
//! | [`STACK_ID`], [`STACK_NAME`] | record `zenml.stack.id`, `zenml.stack.name` |
//! | [`USER_ID`], [`USER_NAME`] | record `zenml.user.id`, `zenml.user.name` |
//! | [`LOG_STORE_ID`], [`LOG_STORE_NAME`] | record `zenml.log_store.id`, `zenml.log_store.name` |
//! | [`LOG_STORE_CONFIG`] | the `otel` log store's configuration as JSON (the component's keys) |
//! | [`LOG_STORE_CONFIG_FILE`] | the same, as the path of a JSON file |
//! | [`STATS_FILE`] | where `shutdown()` (and the guard's drop) writes the final [`ExportStats`](crate::ExportStats) as JSON, for the step's receipt |
//! | [`OWNER_FILE`] | a file the first process to make a layer creates: only that process uses [`STATS_FILE`] and `ZENML_OTEL_SPOOL_DIR` |
//! | [`CONSOLE_FIFO`] | a named pipe the helper reads: every record is also written there, for the step's console (`console.rs`) |
//! | [`HANDOVER_VERSION`] | the helper's handover version (this crate's is [`VERSION`], written to the stats file) |
//!
//! **One owner.** A program's children inherit its environment, handover included. They belong
//! to the step too (their records carry its context and go where the program's go), but the
//! stats file and the spool directory are one process's: with [`OWNER_FILE`] handed over, the
//! first process that makes a layer creates that file (0600, exclusively) with its pid and is
//! the owner; any other process reads them (and [`CONSOLE_FIFO`]) as unset (no spool of its own, no
//! receipt). Without [`OWNER_FILE`] (set by hand, or by a helper older than handover 2), the
//! variables are every reader's, as before.
//!
//! **Versions.** The helper (pip) and the crate (crates.io) are released apart. A handover
//! only ever adds variables; each side ignores what it does not know and works with what it
//! gets: a crate older than a variable ignores it, and a helper reads `handover_version` in the
//! stats file to know what the program understood (absent: version 1).
//! Ids must be UUIDs (exported in ZenML's lowercase hyphenated form, so a query with ZenML's
//! own value matches); names any text without control characters; the source a word such as
//! `step`. A variable that is set but blank or malformed is an error naming it.

use opentelemetry::logs::AnyValue;
use opentelemetry::{Key, StringValue};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::environ::Env;
use crate::Error;

/// The pipeline run's id (UUID).
pub const PIPELINE_RUN_ID: &str = "ZENML_OTEL_PIPELINE_RUN_ID";
/// The pipeline run's name.
pub const PIPELINE_RUN_NAME: &str = "ZENML_OTEL_PIPELINE_RUN_NAME";
/// The step run's id (UUID).
pub const STEP_RUN_ID: &str = "ZENML_OTEL_STEP_RUN_ID";
/// The step run's name.
pub const STEP_RUN_NAME: &str = "ZENML_OTEL_STEP_RUN_NAME";
/// The id (UUID) of the step's logs entry: ZenML's log stores find a step's logs by it.
pub const LOG_ID: &str = "ZENML_OTEL_LOG_ID";
/// The logs entry's source (`step` for a step's own logs).
pub const LOG_SOURCE: &str = "ZENML_OTEL_LOG_SOURCE";
/// The pipeline's id (UUID).
pub const PIPELINE_ID: &str = "ZENML_OTEL_PIPELINE_ID";
/// The pipeline's name.
pub const PIPELINE_NAME: &str = "ZENML_OTEL_PIPELINE_NAME";
/// The project's id (UUID).
pub const PROJECT_ID: &str = "ZENML_OTEL_PROJECT_ID";
/// The project's name.
pub const PROJECT_NAME: &str = "ZENML_OTEL_PROJECT_NAME";
/// The stack's id (UUID).
pub const STACK_ID: &str = "ZENML_OTEL_STACK_ID";
/// The stack's name.
pub const STACK_NAME: &str = "ZENML_OTEL_STACK_NAME";
/// The user's id (UUID).
pub const USER_ID: &str = "ZENML_OTEL_USER_ID";
/// The user's name.
pub const USER_NAME: &str = "ZENML_OTEL_USER_NAME";
/// The active stack's log store id (UUID).
pub const LOG_STORE_ID: &str = "ZENML_OTEL_LOG_STORE_ID";
/// The active stack's log store name.
pub const LOG_STORE_NAME: &str = "ZENML_OTEL_LOG_STORE_NAME";
/// The `otel` log store's configuration: a JSON object of the component's keys.
pub const LOG_STORE_CONFIG: &str = "ZENML_OTEL_LOG_STORE_CONFIG";
/// The path of a JSON file holding the `otel` log store's configuration.
pub const LOG_STORE_CONFIG_FILE: &str = "ZENML_OTEL_LOG_STORE_CONFIG_FILE";
/// Where the pipeline writes its final counters when it shuts down: a JSON object with
/// `emitted`, `exported`, `dropped`, `failed`, `rejected` and `truncated`, replacing the file
/// whole (written beside it, then renamed). Its directory must exist.
pub const STATS_FILE: &str = "ZENML_OTEL_STATS_FILE";
/// The path of the handover's owner claim: see "One owner" above. Its directory is the
/// helper's; the file must not exist yet when the program starts.
pub const OWNER_FILE: &str = "ZENML_OTEL_OWNER_FILE";
/// The handover version the helper speaks: a positive integer.
pub const HANDOVER_VERSION: &str = "ZENML_OTEL_HANDOVER_VERSION";
/// The path of a named pipe the helper reads (see `console.rs` for what is written to it):
/// the step's console shows the program's records. The owner's alone.
pub const CONSOLE_FIFO: &str = "ZENML_OTEL_CONSOLE_FIFO";
/// The handover version this crate speaks. 2 added [`OWNER_FILE`] and [`HANDOVER_VERSION`];
/// 3 [`CONSOLE_FIFO`].
pub const VERSION: u32 = 3;
/// The crash-safe spool's directory (a configuration variable, `spool_dir`): one process's.
pub(crate) const SPOOL_DIR: &str = "ZENML_OTEL_SPOOL_DIR";
/// The variables only the handover's owner reads.
const OWNED: [&str; 3] = [STATS_FILE, SPOOL_DIR, CONSOLE_FIFO];

#[derive(Debug, Clone, Copy)]
enum Shape {
    Uuid,
    Name,
    Source,
}

/// The variables that become record attributes only, with their attribute and value shape.
const RECORD_ATTRIBUTES: &[(&str, &str, Shape)] = &[
    (LOG_ID, "zenml.log.id", Shape::Uuid),
    (PIPELINE_RUN_NAME, "zenml.pipeline.run.name", Shape::Name),
    (STEP_RUN_NAME, "zenml.step.run.name", Shape::Name),
    (PIPELINE_ID, "zenml.pipeline.id", Shape::Uuid),
    (PIPELINE_NAME, "zenml.pipeline.name", Shape::Name),
    (PROJECT_ID, "zenml.project.id", Shape::Uuid),
    (PROJECT_NAME, "zenml.project.name", Shape::Name),
    (STACK_ID, "zenml.stack.id", Shape::Uuid),
    (STACK_NAME, "zenml.stack.name", Shape::Name),
    (USER_ID, "zenml.user.id", Shape::Uuid),
    (USER_NAME, "zenml.user.name", Shape::Name),
    (LOG_STORE_ID, "zenml.log_store.id", Shape::Uuid),
    (LOG_STORE_NAME, "zenml.log_store.name", Shape::Name),
];

/// Every variable this module reads, for tests and tools that clear them.
pub const ALL: &[&str] = &[
    PIPELINE_RUN_ID,
    PIPELINE_RUN_NAME,
    STEP_RUN_ID,
    STEP_RUN_NAME,
    LOG_ID,
    LOG_SOURCE,
    PIPELINE_ID,
    PIPELINE_NAME,
    PROJECT_ID,
    PROJECT_NAME,
    STACK_ID,
    STACK_NAME,
    USER_ID,
    USER_NAME,
    LOG_STORE_ID,
    LOG_STORE_NAME,
    LOG_STORE_CONFIG,
    LOG_STORE_CONFIG_FILE,
    STATS_FILE,
    OWNER_FILE,
    CONSOLE_FIFO,
    HANDOVER_VERSION,
];

/// The step context a program was handed: the process's base run context.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Handover {
    pub(crate) pipeline_run_id: Option<Arc<str>>,
    pub(crate) step_id: Option<Arc<str>>,
    pub(crate) source: Option<Arc<str>>,
    /// ZenML's other record attributes (`zenml.log.id`, the names), in the table's order.
    pub(crate) attributes: Vec<(Key, AnyValue)>,
    /// [`STATS_FILE`].
    pub(crate) stats_file: Option<PathBuf>,
    /// [`CONSOLE_FIFO`].
    pub(crate) console_fifo: Option<PathBuf>,
}

impl Handover {
    /// Reads and checks every id and name variable; unset ones are left out.
    pub(crate) fn read(env: Env<'_>) -> Result<Self, Error> {
        let value = |name: &'static str, shape| checked(env, name, shape);
        let handover = Self {
            pipeline_run_id: value(PIPELINE_RUN_ID, Shape::Uuid)?.map(Arc::from),
            step_id: value(STEP_RUN_ID, Shape::Uuid)?.map(Arc::from),
            source: value(LOG_SOURCE, Shape::Source)?.map(Arc::from),
            attributes: RECORD_ATTRIBUTES
                .iter()
                .filter_map(|&(name, key, shape)| {
                    value(name, shape).transpose().map(|text| {
                        text.map(|text| {
                            let text = StringValue::from(Arc::<str>::from(text));
                            (Key::from_static_str(key), AnyValue::String(text))
                        })
                    })
                })
                .collect::<Result<_, _>>()?,
            stats_file: stats_file(env)?,
            console_fifo: checked(env, CONSOLE_FIFO, Shape::Name)?.map(PathBuf::from),
        };
        version(env)?;
        if handover.step_id.is_some() && handover.pipeline_run_id.is_none() {
            return Err(Error::config(
                STEP_RUN_ID,
                format!("is set, but {PIPELINE_RUN_ID} is not: a step run belongs to a run"),
            ));
        }
        Ok(handover)
    }
}

/// Checks [`HANDOVER_VERSION`]: any positive integer (a newer helper's too: what this crate
/// does not know, it ignores).
fn version(env: Env<'_>) -> Result<Option<u32>, Error> {
    let Some(text) = checked(env, HANDOVER_VERSION, Shape::Name)? else {
        return Ok(None);
    };
    match text.trim().parse::<u32>() {
        Ok(version) if version > 0 => Ok(Some(version)),
        _ => Err(Error::config(
            HANDOVER_VERSION,
            format!("`{text}` is not a handover version (a positive integer)"),
        )),
    }
}

/// Whether this process may read `name` (set in `env`): every variable but the owner's
/// ([`STATS_FILE`], `ZENML_OTEL_SPOOL_DIR`), and those too when this process owns the
/// handover (see "One owner" above).
pub(crate) fn may_read(name: &str, env: Env<'_>) -> Result<bool, Error> {
    if !OWNED.contains(&name) {
        return Ok(true);
    }
    let Some(path) = checked(env, OWNER_FILE, Shape::Name)? else {
        return Ok(true);
    };
    Ok(claim(Path::new(&path)))
}

/// Claims the handover for this process: creates `path` with this process's pid, or finds it
/// there already (a second layer of the same process). Any other outcome (another pid, a
/// link, the helper's directory gone) means another process owns it.
fn claim(path: &Path) -> bool {
    use std::io::{Read as _, Write as _};
    let pid = std::process::id().to_string();
    match crate::private_file::open(
        std::fs::OpenOptions::new().write(true).create_new(true),
        path,
    ) {
        Ok(mut file) => file.write_all(pid.as_bytes()).is_ok(),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mut owner = String::new();
            crate::private_file::open(std::fs::OpenOptions::new().read(true), path)
                .and_then(|file| file.take(32).read_to_string(&mut owner))
                .is_ok_and(|_| owner == pid)
        }
        Err(_) => false,
    }
}

/// [`STATS_FILE`], if set: a path whose directory exists.
fn stats_file(env: Env<'_>) -> Result<Option<PathBuf>, Error> {
    let Some(path) = checked(env, STATS_FILE, Shape::Name)?.map(PathBuf::from) else {
        return Ok(None);
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() || path.is_dir() {
        return Err(Error::config(
            STATS_FILE,
            format!("`{}`: not a file in an existing directory", path.display()),
        ));
    }
    Ok(Some(path))
}

/// The variable's value if it is set, checked against its shape.
fn checked(env: Env<'_>, name: &'static str, shape: Shape) -> Result<Option<String>, Error> {
    let Some(value) = env(name)? else {
        return Ok(None);
    };
    if value.trim().is_empty() {
        return Err(Error::config(
            name,
            "is set but blank; unset it or give a value",
        ));
    }
    let problem = match shape {
        Shape::Uuid => match uuid::Uuid::try_parse(&value) {
            Ok(id) => return Ok(Some(id.hyphenated().to_string())),
            Err(_) => format!("`{value}` is not a UUID (ZenML ids are UUIDs)"),
        },
        Shape::Name if value.chars().any(char::is_control) => {
            "contains control characters".to_owned()
        }
        Shape::Source
            if !value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)) =>
        {
            format!("`{value}` is not a log source such as `step` (letters, digits, `_`, `-`, `.`)")
        }
        Shape::Name | Shape::Source => return Ok(Some(value)),
    };
    Err(Error::config(name, problem))
}

/// The log store configuration handed over, as JSON text and the variable it came from.
pub(crate) fn config_source(env: Env<'_>) -> Result<Option<(&'static str, ConfigText)>, Error> {
    match (env(LOG_STORE_CONFIG)?, env(LOG_STORE_CONFIG_FILE)?) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(Error::config(
            LOG_STORE_CONFIG,
            format!("and {LOG_STORE_CONFIG_FILE} are both set; give the configuration once"),
        )),
        (Some(json), None) if json.trim().is_empty() => Err(Error::config(
            LOG_STORE_CONFIG,
            "is set but blank; unset it or give a JSON object",
        )),
        (Some(json), None) => Ok(Some((LOG_STORE_CONFIG, ConfigText::Json(json)))),
        (None, Some(path)) if path.trim().is_empty() => Err(Error::config(
            LOG_STORE_CONFIG_FILE,
            "is set but blank; unset it or give a file path",
        )),
        (None, Some(path)) => Ok(Some((LOG_STORE_CONFIG_FILE, ConfigText::File(path)))),
    }
}

/// Where a handed-over configuration is.
#[derive(Debug)]
pub(crate) enum ConfigText {
    Json(String),
    File(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environ::fixed as env;

    const RUN: &str = "e44082a8-5006-4788-86e3-0c99ecfb36fe";
    const STEP: &str = "3fa122bd-b946-4ce8-af22-67421f1fc97a";

    fn error(vars: &[(&str, &str)]) -> Error {
        Handover::read(&env(vars)).expect_err("should be refused")
    }

    #[test]
    fn nothing_set_is_an_empty_handover() {
        assert_eq!(Handover::read(&env(&[])).unwrap(), Handover::default());
    }

    #[test]
    fn ids_are_normalised_to_zenml_spelling() {
        let upper = RUN.to_uppercase();
        let handover = Handover::read(&env(&[
            (PIPELINE_RUN_ID, &upper),
            (LOG_ID, "{3fa122bd-b946-4ce8-af22-67421f1fc97a}"),
        ]))
        .unwrap();
        assert_eq!(handover.pipeline_run_id.as_deref(), Some(RUN));
        assert_eq!(handover.attributes[0].0.as_str(), "zenml.log.id");
        assert_eq!(handover.attributes[0].1, AnyValue::from(STEP.to_owned()));
    }

    #[test]
    fn every_variable_maps_to_its_attribute() {
        let mut vars = vec![
            (PIPELINE_RUN_ID, RUN),
            (STEP_RUN_ID, STEP),
            (LOG_SOURCE, "step"),
        ];
        vars.extend(
            RECORD_ATTRIBUTES
                .iter()
                .map(|&(name, _, shape)| match shape {
                    Shape::Uuid => (name, STEP),
                    _ => (name, "a name"),
                }),
        );
        let handover = Handover::read(&env(&vars)).unwrap();
        assert_eq!(handover.step_id.as_deref(), Some(STEP));
        assert_eq!(handover.source.as_deref(), Some("step"));
        let keys: Vec<&str> = handover
            .attributes
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        let expected: Vec<&str> = RECORD_ATTRIBUTES.iter().map(|&(_, key, _)| key).collect();
        assert_eq!(keys, expected);
    }

    #[test]
    fn every_id_variable_refuses_blank_and_malformed_values() {
        for name in [
            PIPELINE_RUN_ID,
            LOG_ID,
            PIPELINE_ID,
            PROJECT_ID,
            STACK_ID,
            USER_ID,
            LOG_STORE_ID,
        ] {
            for bad in ["", "   ", "not-a-uuid", "e44082a8-5006-4788-86e3", "12345"] {
                let err = error(&[(name, bad)]);
                assert_eq!(err.field(), Some(name), "{name}={bad:?}: {err}");
            }
        }
        let err = error(&[(PIPELINE_RUN_ID, RUN), (STEP_RUN_ID, "step-1")]);
        assert_eq!(err.field(), Some(STEP_RUN_ID));
        assert!(err.to_string().contains("not a UUID"), "{err}");
    }

    #[test]
    fn names_and_source_refuse_blank_and_malformed_values() {
        let names = RECORD_ATTRIBUTES
            .iter()
            .filter(|(_, _, shape)| matches!(shape, Shape::Name))
            .map(|&(name, _, _)| name);
        for name in names {
            for bad in ["", " \t", "line\nbreak"] {
                assert_eq!(error(&[(name, bad)]).field(), Some(name), "{name}={bad:?}");
            }
        }
        for bad in ["", "two words", "step\n", "ünïcode"] {
            assert_eq!(
                error(&[(LOG_SOURCE, bad)]).field(),
                Some(LOG_SOURCE),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_step_needs_its_run() {
        let err = error(&[(STEP_RUN_ID, STEP)]);
        assert_eq!(err.field(), Some(STEP_RUN_ID));
        assert!(err.to_string().contains(PIPELINE_RUN_ID), "{err}");
    }

    #[test]
    fn only_the_first_process_to_claim_the_handover_reads_its_owner_s_variables() {
        let dir = std::env::temp_dir().join(format!("zenml-otel-owner-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let claim = dir.join("owner");
        let vars = [(OWNER_FILE, claim.to_str().unwrap())];
        assert!(
            may_read(LOG_ID, &env(&vars)).unwrap(),
            "not an owner's variable"
        );
        assert!(
            may_read(STATS_FILE, &env(&vars)).unwrap(),
            "the first claims it"
        );
        assert!(may_read(SPOOL_DIR, &env(&vars)).unwrap(), "and keeps it");
        let mode = std::fs::metadata(&claim).unwrap().permissions();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(mode.mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(&claim).unwrap(),
            std::process::id().to_string()
        );
        // Another process's claim (a pid that is not ours): this one is a child.
        std::fs::write(&claim, "1").unwrap();
        assert!(!may_read(STATS_FILE, &env(&vars)).unwrap());
        assert!(!may_read(SPOOL_DIR, &env(&vars)).unwrap());
        assert!(
            may_read(STATS_FILE, &env(&[])).unwrap(),
            "no claim handed over: as before"
        );
        // The helper's directory gone (a child outliving the call), or a planted link.
        let gone = [(OWNER_FILE, "/nonexistent-zenml-otel/owner")];
        assert!(!may_read(STATS_FILE, &env(&gone)).unwrap());
        std::fs::remove_file(&claim).unwrap();
        std::os::unix::fs::symlink(dir.join("target"), &claim).unwrap();
        assert!(!may_read(STATS_FILE, &env(&vars)).unwrap());
        assert!(!dir.join("target").exists(), "a link is never followed");
        assert_eq!(
            may_read(STATS_FILE, &env(&[(OWNER_FILE, " ")]))
                .unwrap_err()
                .field(),
            Some(OWNER_FILE)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_handover_version_is_a_positive_integer_and_newer_ones_are_taken() {
        for good in ["1", "2", "17"] {
            Handover::read(&env(&[(HANDOVER_VERSION, good)])).unwrap();
        }
        for bad in ["0", "two", "-1", "2.0"] {
            assert_eq!(
                error(&[(HANDOVER_VERSION, bad)]).field(),
                Some(HANDOVER_VERSION),
                "{bad}"
            );
        }
    }

    #[test]
    fn config_is_given_once_and_not_blank() {
        assert!(config_source(&env(&[])).unwrap().is_none());
        let both = config_source(&env(&[
            (LOG_STORE_CONFIG, "{}"),
            (LOG_STORE_CONFIG_FILE, "f"),
        ]));
        assert_eq!(both.unwrap_err().field(), Some(LOG_STORE_CONFIG));
        for name in [LOG_STORE_CONFIG, LOG_STORE_CONFIG_FILE] {
            let blank = config_source(&env(&[(name, " ")]));
            assert_eq!(blank.unwrap_err().field(), Some(name));
        }
    }
}
