//! A [`tracing`](https://docs.rs/tracing) layer that ships a Rust program's logs to **ZenML's
//! OpenTelemetry log store**, or any OTLP collector.
//!
//! Every `tracing` event becomes an OpenTelemetry log record, exported over OTLP (HTTP with
//! protobuf by default; JSON and gRPC as features) by one batching pipeline per layer, under a
//! resource that names the ZenML **pipeline run**, **step** and **source** the event was logged
//! in. Runs, steps and sources come from `zenml.*` span fields ([`fields`]) or, in a program a
//! ZenML step started with the Python helper's `run_rust_step`, from the step itself
//! ([`handover`]).
//!
//! # Example
//!
//! ```no_run
//! use tracing::{info, info_span};
//! use tracing_subscriber::layer::SubscriberExt;
//! use tracing_subscriber::util::SubscriberInitExt;
//! use zenml_otel::{OtelLogStoreConfig, ZenmlOtelLayer};
//!
//! fn main() -> Result<(), zenml_otel::Error> {
//!     let layer = ZenmlOtelLayer::new(OtelLogStoreConfig {
//!         endpoint: Some("http://otel-collector:4318".into()),
//!         ..OtelLogStoreConfig::default()
//!     })?;
//!     // Keep the guard alive: dropping it exports what is queued and shuts the pipeline down.
//!     let _guard = layer.guard();
//!     tracing_subscriber::registry().with(layer).init();
//!
//!     let run = info_span!("pipeline", zenml.pipeline_run_id = "8e9f…");
//!     let _run = run.enter();
//!     info!("orchestrating"); // source "orchestrator"
//!
//!     let step = info_span!("step", zenml.step_id = "1c2d…");
//!     let _step = step.enter();
//!     info!(rows = 1024u64, "loaded the data"); // source "step"
//!     Ok(())
//! }
//! ```
//!
//! `let _ = layer.guard();` would drop the guard at once and shut the pipeline down before
//! anything is logged (every later record is then counted as dropped).
//!
//! # The pieces
//!
//! - [`ZenmlOtelLayer`]: the layer. [`ZenmlOtelLayer::new`] validates the whole configuration
//!   up front and names the field (or environment variable) and the problem in its [`Error`].
//! - [`OtelLogStoreConfig`]: the configuration, with the field names and defaults of ZenML's
//!   `otel` log-store flavor; each field's documentation names its environment variables.
//!   [`ExplicitConfig`] (from the `with_*` setters) marks values that win over the handover and
//!   the environment. [`Protocol`], [`Compression`] and [`OnFull`] are its choices.
//! - [`LogStoreHandle`] (`layer.handle()`): [`force_flush`](LogStoreHandle::force_flush),
//!   [`shutdown`](LogStoreHandle::shutdown), [`stats`](LogStoreHandle::stats) (the exact
//!   [`ExportStats`]) and the opt-in panic hook, from anywhere; [`ShutdownGuard`] shuts down on
//!   drop.
//! - [`fields`]: the span field names that place records in a run; [`handover`]: the
//!   environment variables a ZenML step hands a program.
//! - `testing` (the `testing` feature): an in-process OTLP receiver with faults and size limits,
//!   for your own tests.
//!
//! # Promises
//!
//! Nothing is lost silently: once [`force_flush`](LogStoreHandle::force_flush) or
//! [`shutdown`](LogStoreHandle::shutdown) returned, `emitted == exported + dropped + failed +
//! rejected` for everything emitted before. The logging thread never waits on I/O. Retryable
//! failures are retried for up to `max_retry_elapsed_millis`; a run's records keep their order
//! across requests; `shutdown()` returns within `export_timeout_millis` + 200 ms. With
//! `spool_dir`, records survive a killed process and go out on the next start. The details, and
//! the tests that hold each, are in [`_guide::delivery`] and [`_guide::spool`].
//!
//! # Guides
//!
//! The guides are the `docs/` files of the repository, here as modules of their own:
//!
//! - [`_guide::zenml_steps`]: a Rust step in a ZenML pipeline (`run_rust_step`, the handover,
//!   direct and relay, the receipt).
//! - [`_guide::configuration`]: the Cargo features, every field, the endpoint rules, TLS,
//!   proxies, where values come from.
//! - [`_guide::records`]: span fields, resource attributes, the record mapping, panics.
//! - [`_guide::delivery`]: what is counted, retried, ordered and bounded.
//! - [`_guide::spool`]: the crash-safe spool and its on-disk format.
//! - [`_guide::metrics`]: the layer's own OTLP metrics.
//! - [`_guide::performance`]: the export pipeline and what it costs.
//! - [`_guide::integrations`]: with `fmt`, tokio and `log`; testing your own steps.
//! - [`_guide::sdk`] (the `sdk` feature): into an existing OpenTelemetry SDK pipeline, and when
//!   to use it rather than the layer.
//!
//! # Features
//!
//! `http-proto` and `tls` (default): OTLP/HTTP with protobuf and gzip, over HTTPS too.
//! `http-json`: OTLP/JSON bodies. `grpc`: OTLP/gRPC (tonic, on a runtime the crate owns).
//! `zstd`: zstd compression. `sdk`: the `sdk` module. `testing`: the receiver above. A protocol, compression or
//! `https://` endpoint whose feature a build lacks is an error at [`ZenmlOtelLayer::new`].
//!
//! The repository's README, ARCHITECTURE.md (the module map), CONTRIBUTING.md and BENCHMARKS.md
//! are at <https://github.com/zenml-io/zenml-otel>.
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod batch;
mod config;
mod console;
mod environ;
mod error;
mod event_context;
pub mod fields;
pub mod handover;
mod last_context;
mod layer;
mod metrics;
mod otlp;
mod panic_hook;
mod pipeline;
mod private_file;
mod record;
mod redact;
mod rpc_status;
#[cfg(feature = "sdk")]
#[cfg_attr(docsrs, doc(cfg(feature = "sdk")))]
pub mod sdk;
mod span_context;
mod span_fields;
mod spool;
mod sync;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod wire;

/// The guides: the repository's `docs/*.md`, one module each (their Rust examples are doctests).
#[cfg(any(doc, doctest))]
pub mod _guide {
    /// Rust steps in a ZenML pipeline.
    pub mod zenml_steps {
        #![doc = include_str!("../docs/zenml-steps.md")]
    }
    /// Configuration.
    pub mod configuration {
        #![doc = include_str!("../docs/configuration.md")]
    }
    /// What a record holds.
    pub mod records {
        #![doc = include_str!("../docs/records.md")]
    }
    /// Delivery guarantees.
    pub mod delivery {
        #![doc = include_str!("../docs/delivery.md")]
    }
    /// The crash-safe spool.
    pub mod spool {
        #![doc = include_str!("../docs/spool.md")]
    }
    /// The layer's own metrics.
    pub mod metrics {
        #![doc = include_str!("../docs/metrics.md")]
    }
    /// Performance.
    pub mod performance {
        #![doc = include_str!("../docs/performance.md")]
    }
    /// Using it with other crates, and testing your own steps.
    pub mod integrations {
        #![doc = include_str!("../docs/integrations.md")]
    }
    /// Into an existing OpenTelemetry SDK pipeline (the `sdk` module).
    // Shown whatever the features; its example is a doctest only where `sdk` is built.
    #[cfg(any(feature = "sdk", doc))]
    pub mod sdk {
        #![doc = include_str!("../docs/sdk.md")]
    }
}

/// The README's examples, compiled as doctests (the README itself is GitHub's and crates.io's page).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use batch::{ExportStats, LogStoreHandle, ShutdownGuard};
pub use config::{Compression, ExplicitConfig, OnFull, OtelLogStoreConfig, Protocol};
pub use error::Error;
pub use layer::ZenmlOtelLayer;
