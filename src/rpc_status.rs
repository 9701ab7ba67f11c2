//! `google.rpc.Status` and its `RetryInfo` detail: how a gRPC server (and an OTLP/HTTP error
//! body) says why a request failed and when to send it again. The gRPC exporter reads them;
//! the testing receiver writes them.

use std::time::Duration;

use prost::Message;

/// The type URL of a `google.rpc.RetryInfo` detail.
pub(crate) const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// `google.rpc.Status` (error bodies of OTLP/HTTP, `grpc-status-details-bin` of gRPC).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub(crate) code: i32,
    #[prost(string, tag = "2")]
    pub(crate) message: String,
    #[prost(message, repeated, tag = "3")]
    pub(crate) details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ProtoAny {
    #[prost(string, tag = "1")]
    pub(crate) type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub(crate) retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub(crate) seconds: i64,
    #[prost(int32, tag = "2")]
    pub(crate) nanos: i32,
}

/// The `RetryInfo` delay of an encoded `google.rpc.Status`, if it carries one.
#[cfg_attr(not(feature = "grpc"), allow(dead_code))]
pub(crate) fn retry_delay(status: &[u8]) -> Option<Duration> {
    let status = RpcStatus::decode(status).ok()?;
    let info = status
        .details
        .iter()
        .find(|detail| detail.type_url == RETRY_INFO_TYPE)?;
    let delay = RetryInfo::decode(info.value.as_slice()).ok()?.retry_delay?;
    let seconds = u64::try_from(delay.seconds).ok()?;
    let nanos = u32::try_from(delay.nanos).ok()?.min(999_999_999);
    Some(Duration::new(seconds, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_info_detail_gives_its_delay_and_anything_else_none() {
        let info = RetryInfo {
            retry_delay: Some(ProtoDuration {
                seconds: 2,
                nanos: 500_000_000,
            }),
        };
        let status = |type_url: &str| RpcStatus {
            code: 14,
            message: "unavailable".into(),
            details: vec![ProtoAny {
                type_url: type_url.into(),
                value: info.encode_to_vec(),
            }],
        };
        let delay = retry_delay(&status(RETRY_INFO_TYPE).encode_to_vec());
        assert_eq!(delay, Some(Duration::from_millis(2500)));
        let other = status("type.googleapis.com/google.rpc.DebugInfo").encode_to_vec();
        assert_eq!(retry_delay(&other), None);
        assert_eq!(retry_delay(b"\xff\xff not protobuf"), None);
        assert_eq!(retry_delay(&[]), None);
    }
}
