#![doc = include_str!("../README.md")]
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
pub mod fields;
pub mod handover;
mod last_context;
mod layer;
mod metrics;
mod otlp;
mod panic_hook;
mod private_file;
mod record;
mod redact;
mod rpc_status;
mod span_context;
mod span_fields;
mod spool;
mod sync;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod wire;

pub use batch::{ExportStats, LogStoreHandle, ShutdownGuard};
pub use config::{Compression, ExplicitConfig, OnFull, OtelLogStoreConfig, Protocol};
pub use error::Error;
pub use layer::ZenmlOtelLayer;
