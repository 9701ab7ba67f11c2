//! The log store's configuration, mirroring ZenML's `otel` log-store flavor, one job per file:
//! `kinds` the public enums; `declare` and `model` the fields, declared once; `explicit` the
//! program's explicit configuration; `sources` where values come from (explicit > handover >
//! environment > defaults) and their merge, with `env` the environment and `endpoint` the
//! endpoint rules; `validate` the checks that turn a configuration into `Settings`.

#[macro_use]
mod declare;
mod endpoint;
mod env;
mod explicit;
mod kinds;
mod model;
mod sources;
mod validate;

pub use explicit::ExplicitConfig;
pub use kinds::{Compression, OnFull, Protocol};
pub use model::OtelLogStoreConfig;
pub(crate) use validate::{feature_of, missing_feature, Settings};
// Read by the HTTP transport only.
#[cfg(feature = "http-proto")]
pub(crate) use validate::Headers;
// Only the transports with TLS (`tls`, `grpc`) read it.
#[cfg_attr(not(feature = "tls"), allow(unused_imports))]
pub(crate) use validate::Tls;
