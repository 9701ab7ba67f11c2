//! The configuration's public enums: the OTLP protocol, the body compression and the policy on
//! a full queue, each with the name configuration files and variables use.

use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// The OTLP transport and encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// `http/protobuf`: OTLP/HTTP with protobuf bodies (the default).
    #[default]
    HttpProtobuf,
    /// `http/json`: OTLP/HTTP with the spec's JSON encoding (lowerCamelCase keys, hex ids).
    HttpJson,
    /// `grpc`: OTLP/gRPC (tonic), on a runtime the crate owns.
    Grpc,
}

impl Protocol {
    /// The name used in configuration and `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HttpProtobuf => "http/protobuf",
            Self::HttpJson => "http/json",
            Self::Grpc => "grpc",
        }
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "http/protobuf" => Ok(Self::HttpProtobuf),
            "http/json" => Ok(Self::HttpJson),
            "grpc" => Ok(Self::Grpc),
            _ => Err(format!(
                "`{text}` is not an OTLP protocol; expected `http/protobuf`, `http/json` or `grpc`"
            )),
        }
    }
}

/// Compression of export request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Compression {
    /// No compression (the default).
    #[default]
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// The name used in configuration and `OTEL_EXPORTER_OTLP_COMPRESSION`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        }
    }
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" | "" => Ok(Self::None),
            "gzip" => Ok(Self::Gzip),
            "zstd" => Ok(Self::Zstd),
            "deflate" => Err(
                "`deflate` (offered by ZenML's Python store) is not an OTLP compression the Rust \
                 exporter supports; use `gzip` or `zstd`"
                    .to_owned(),
            ),
            _ => Err(format!(
                "`{text}` is not a compression; expected `none`, `gzip` or `zstd`"
            )),
        }
    }
}

/// What an emitting thread does when the export queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnFull {
    /// Drop the new record and count it in `stats().dropped` (the default): logging never
    /// waits.
    #[default]
    Drop,
    /// Wait for room, at most `max_block_millis`, then drop and count: lossless while the
    /// collector keeps up, at the cost of slowing the logging thread when it does not.
    Block,
}

impl FromStr for OnFull {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "drop" => Ok(Self::Drop),
            "block" => Ok(Self::Block),
            _ => Err(format!(
                "`{text}` is not a policy; expected `drop` or `block`"
            )),
        }
    }
}

/// Deserializes through `FromStr`, so file and environment values share one error message.
macro_rules! deserialize_from_str {
    ($type:ty) => {
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
deserialize_from_str!(Protocol);
deserialize_from_str!(Compression);
deserialize_from_str!(OnFull);
