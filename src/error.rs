//! The crate's one error type.

use std::fmt;

/// Why building, flushing or shutting down the log store failed.
///
/// Configuration errors name the offending field and say what is wrong with its value; they never
/// echo header values, which usually carry credentials. Where an underlying error caused it (a
/// file that cannot be read, a certificate TLS cannot load, a thread that cannot start), that
/// error is its [`source`](std::error::Error::source), not part of its message, so reporters
/// that print the chain (`anyhow`'s `{:#}`, `eyre`) show it once.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

#[derive(Debug)]
enum ErrorKind {
    Config { field: String, problem: String },
    Export(String),
    Timeout(&'static str),
    ShutDown,
}

impl Error {
    pub(crate) fn config(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::of(ErrorKind::Config {
            field: field.into(),
            problem: problem.into(),
        })
    }

    pub(crate) fn export(message: impl Into<String>) -> Self {
        Self::of(ErrorKind::Export(message.into()))
    }

    pub(crate) fn timeout(operation: &'static str) -> Self {
        Self::of(ErrorKind::Timeout(operation))
    }

    pub(crate) fn shut_down() -> Self {
        Self::of(ErrorKind::ShutDown)
    }

    fn of(kind: ErrorKind) -> Self {
        Self { kind, source: None }
    }

    /// The underlying error that caused this one.
    pub(crate) fn caused_by(
        mut self,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(cause.into());
        self
    }

    /// The configuration field (or environment variable) this error is about, if it is a
    /// configuration error.
    pub fn field(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::Config { field, .. } => Some(field),
            _ => None,
        }
    }

    /// `true` when the log store was already shut down.
    pub fn is_shut_down(&self) -> bool {
        matches!(self.kind, ErrorKind::ShutDown)
    }

    /// `true` when an operation gave up waiting (the pipeline goes on in the background).
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, ErrorKind::Timeout(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Config { field, problem } => {
                write!(f, "invalid log store configuration: `{field}`: {problem}")
            }
            ErrorKind::Export(message) => write!(f, "OTLP export failed: {message}"),
            ErrorKind::Timeout(operation) => write!(f, "{operation} timed out"),
            ErrorKind::ShutDown => f.write_str("the log store is already shut down"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|cause| cause as _)
    }
}
