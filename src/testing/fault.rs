//! Fault injection: what [`OtlpReceiver::set_fault`](super::OtlpReceiver::set_fault) and
//! [`OtlpReceiver::fail_next`](super::OtlpReceiver::fail_next) make the receiver do, and the
//! wire encodings of its answers (HTTP status bodies, gRPC statuses with `RetryInfo`).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use http::StatusCode;
use prost::Message;
use tokio::sync::{watch, Notify};

use super::Shared;
use crate::rpc_status::{ProtoAny, ProtoDuration, RetryInfo, RpcStatus, RETRY_INFO_TYPE};

/// A failure the [`OtlpReceiver`](super::OtlpReceiver) simulates, for testing how an exporter
/// copes with an unhealthy collector.
///
/// Install one for every request with
/// [`set_fault`](super::OtlpReceiver::set_fault), or for the next few with
/// [`fail_next`](super::OtlpReceiver::fail_next). A faulted request is counted by
/// [`attempts`](super::OtlpReceiver::attempts) but not stored: it shows up in neither
/// [`requests`](super::OtlpReceiver::requests) nor
/// [`records`](super::OtlpReceiver::records) — except under [`Fault::PartialSuccess`] and
/// [`Fault::Delay`], which do store what they accept.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The collector is down.
    ///
    /// With [`set_fault`](super::OtlpReceiver::set_fault) the receiver stops listening — the
    /// port stays reserved (bound, not listening) so that nothing else can take it, and new
    /// connections get `ECONNREFUSED` from the kernel, exactly as from a stopped collector —
    /// and closes every open connection. Refused connections never reach the receiver, so
    /// [`attempts`](super::OtlpReceiver::attempts) does not count them. Clearing the fault
    /// listens again on the same port.
    ///
    /// With [`fail_next`](super::OtlpReceiver::fail_next), which counts requests, the port
    /// stays open and each of the next requests has its connection closed without an
    /// answer instead (a collector dying mid-request). Over HTTP/2 (gRPC) that also ends the
    /// other requests in flight on the same connection, and tonic reports the call as
    /// `UNKNOWN` (grpc-go as `UNAVAILABLE`), where an HTTP/1.1 client sees a transport error.
    Refuse,
    /// Answer after this delay; the request is then served normally (stored, 200 / OK).
    ///
    /// The delay starts once the request body has been read. A client that gives up during
    /// the delay may or may not have its request stored: HTTP/2 (gRPC) cancels it, HTTP/1.1
    /// may not notice the client left.
    Delay(Duration),
    /// Answer with this HTTP status and nothing stored; `retry_after` (seconds) is sent as a
    /// `Retry-After` header.
    ///
    /// The HTTP body is a `google.rpc.Status`, protobuf or JSON as the request was, as the
    /// OTLP/HTTP specification asks. A 2xx `code` is answered as a success, but nothing is
    /// stored.
    ///
    /// gRPC requests get the matching status: 429 → `RESOURCE_EXHAUSTED`,
    /// 502/503/504 → `UNAVAILABLE`, 500 → `INTERNAL`, 400 → `INVALID_ARGUMENT`,
    /// 401 → `UNAUTHENTICATED`, 403 → `PERMISSION_DENIED`, 404 and 501 → `UNIMPLEMENTED`,
    /// 409 → `ABORTED`, 499 → `CANCELLED`, any other → `UNKNOWN` (and 2xx → OK, not stored).
    /// `retry_after` becomes a `google.rpc.RetryInfo` detail (`grpc-status-details-bin`),
    /// the gRPC counterpart of `Retry-After`. Per the OTLP specification
    /// `RESOURCE_EXHAUSTED` is retryable only with `RetryInfo`.
    Status {
        /// The HTTP status code; outside `100..=999` it is answered as 500.
        code: u16,
        /// Seconds for the `Retry-After` header (gRPC: `RetryInfo.retry_delay`).
        retry_after: Option<u64>,
    },
    /// Store the request, then answer success with an `ExportLogsServiceResponse` whose
    /// `partial_success` says `rejected` records were rejected because of `message`
    /// (protobuf or OTLP/JSON as the request was, or the gRPC response message).
    ///
    /// A request that does not decode is refused (4xx) as without the fault.
    PartialSuccess {
        /// `partial_success.rejected_log_records`.
        rejected: i64,
        /// `partial_success.error_message`.
        message: String,
    },
    /// Read the request, then never answer: the connection is held open until the fault
    /// configuration changes ([`set_fault`](super::OtlpReceiver::set_fault) is called again,
    /// e.g. `set_fault(None)`) or the receiver is dropped, and is then closed without an
    /// answer. Nothing is stored.
    Blackhole,
}

/// The faults in force: a queue from `fail_next` served first, then the standing fault.
#[derive(Debug, Default)]
pub(super) struct Faults {
    standing: Option<Fault>,
    queue: VecDeque<(usize, Fault)>,
}

/// What the server's tasks watch: whether to refuse connections, and a generation bumped
/// by every `set_fault` (black-holed requests are held until it changes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Control {
    pub(super) generation: u64,
    pub(super) refuse: bool,
}

/// The accept loop's acknowledgement of a `Control` generation.
#[derive(Debug, Default)]
pub(super) struct Applied {
    pub(super) generation: u64,
    /// Why the receiver is not listening although it should be, if so.
    pub(super) error: Option<String>,
}

/// The fault chosen for one request, with the generation it was chosen under.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) fault: Option<Fault>,
    pub(super) generation: u64,
}

impl Faults {
    /// Replaces everything: the standing fault, and any `fail_next` still pending.
    pub(super) fn set(&mut self, fault: Option<Fault>) {
        self.standing = fault;
        self.queue.clear();
    }

    pub(super) fn push(&mut self, n: usize, fault: Fault) {
        if n > 0 {
            self.queue.push_back((n, fault));
        }
    }

    /// The fault for the next request: the head of the queue, else the standing fault.
    pub(super) fn take(&mut self) -> Option<Fault> {
        let Some((left, fault)) = self.queue.front_mut() else {
            return self.standing.clone();
        };
        let fault = fault.clone();
        *left -= 1;
        if *left == 0 {
            self.queue.pop_front();
        }
        Some(fault)
    }

    pub(super) fn standing(&self) -> Option<&Fault> {
        self.standing.as_ref()
    }

    pub(super) fn pending(&self) -> usize {
        self.queue.iter().map(|(n, _)| n).sum()
    }
}

/// One connection as its request handlers see it: the receiver's state and a switch that
/// closes the connection without an answer.
#[derive(Clone)]
pub(super) struct Conn {
    pub(super) shared: Arc<Shared>,
    pub(super) kill: Arc<Notify>,
}

impl Conn {
    /// Closes this connection without answering; never returns (the connection's task,
    /// this handler included, is dropped).
    pub(super) async fn cut<T>(&self) -> T {
        self.kill.notify_one();
        std::future::pending().await
    }

    /// Holds a black-holed request until the fault configuration changes, then cuts the
    /// connection. Never returns.
    pub(super) async fn blackhole<T>(&self, generation: u64) -> T {
        let mut control = self.shared.control.subscribe();
        loop {
            if control.borrow_and_update().generation != generation {
                break;
            }
            if control.changed().await.is_err() {
                break;
            }
        }
        self.cut().await
    }
}

/// Resolves once the receiver refuses connections (at once if it already does).
pub(super) async fn refusing(control: &watch::Sender<Control>) {
    let mut control = control.subscribe();
    loop {
        if control.borrow_and_update().refuse {
            return;
        }
        if control.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Which of two futures finished first.
pub(super) enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Polls both futures until one finishes; the other is dropped. (`tokio::select!` needs a
/// tokio feature this crate does not enable.)
pub(super) async fn race<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = pin!(a);
    let mut b = pin!(b);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(out));
        }
        if let Poll::Ready(out) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(out));
        }
        Poll::Pending
    })
    .await
}

/// The HTTP status a `Fault::Status` answers with.
pub(super) fn http_status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The gRPC code for an HTTP status, as documented on [`Fault::Status`].
pub(super) fn grpc_code(status: StatusCode) -> tonic::Code {
    match status.as_u16() {
        200..=299 => tonic::Code::Ok,
        400 => tonic::Code::InvalidArgument,
        401 => tonic::Code::Unauthenticated,
        403 => tonic::Code::PermissionDenied,
        404 | 501 => tonic::Code::Unimplemented,
        409 => tonic::Code::Aborted,
        429 => tonic::Code::ResourceExhausted,
        499 => tonic::Code::Cancelled,
        500 => tonic::Code::Internal,
        502..=504 => tonic::Code::Unavailable,
        _ => tonic::Code::Unknown,
    }
}

/// The message every simulated failure carries.
pub(super) fn message(status: StatusCode) -> String {
    format!("simulated fault: HTTP {status}")
}

/// The protobuf `google.rpc.Status` body of an OTLP/HTTP error response.
pub(super) fn status_body_protobuf(status: StatusCode) -> Vec<u8> {
    RpcStatus {
        code: grpc_code(status) as i32,
        message: message(status),
        details: Vec::new(),
    }
    .encode_to_vec()
}

/// The OTLP/JSON `google.rpc.Status` body of an OTLP/HTTP error response.
pub(super) fn status_body_json(status: StatusCode) -> Vec<u8> {
    serde_json::json!({
        "code": grpc_code(status) as i32,
        "message": message(status),
    })
    .to_string()
    .into_bytes()
}

/// The gRPC status of a `Fault::Status`, with `RetryInfo` when `retry_after` is set.
pub(super) fn grpc_status(status: StatusCode, retry_after: Option<u64>) -> tonic::Status {
    let code = grpc_code(status);
    let message = message(status);
    let Some(seconds) = retry_after else {
        return tonic::Status::new(code, message);
    };
    let retry_info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: i64::try_from(seconds).unwrap_or(i64::MAX),
            nanos: 0,
        }),
    };
    let details = RpcStatus {
        code: code as i32,
        message: message.clone(),
        details: vec![ProtoAny {
            type_url: RETRY_INFO_TYPE.to_owned(),
            value: retry_info.encode_to_vec(),
        }],
    };
    tonic::Status::with_details(code, message, details.encode_to_vec().into())
}

/// How long set_fault waits for the server thread to apply a change.
pub(super) const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_then_standing() {
        let mut faults = Faults::default();
        faults.set(Some(Fault::Blackhole));
        faults.push(2, Fault::Refuse);
        faults.push(0, Fault::Delay(Duration::ZERO));
        faults.push(1, Fault::Delay(Duration::ZERO));
        assert_eq!(faults.pending(), 3);
        assert_eq!(faults.take(), Some(Fault::Refuse));
        assert_eq!(faults.take(), Some(Fault::Refuse));
        assert_eq!(faults.take(), Some(Fault::Delay(Duration::ZERO)));
        assert_eq!(faults.take(), Some(Fault::Blackhole));
        assert_eq!(faults.take(), Some(Fault::Blackhole));
        faults.push(5, Fault::Refuse);
        faults.set(None);
        assert_eq!(faults.take(), None, "set_fault drops what fail_next queued");
    }

    #[test]
    fn grpc_codes() {
        let code = |c| grpc_code(http_status(c));
        assert_eq!(code(429), tonic::Code::ResourceExhausted);
        assert_eq!(code(503), tonic::Code::Unavailable);
        assert_eq!(code(500), tonic::Code::Internal);
        assert_eq!(code(204), tonic::Code::Ok);
        assert_eq!(code(418), tonic::Code::Unknown);
        assert_eq!(http_status(7), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn retry_info_is_encoded_as_status_details() {
        let status = grpc_status(StatusCode::SERVICE_UNAVAILABLE, Some(3));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        let decoded = RpcStatus::decode(status.details()).unwrap();
        assert_eq!(decoded.details.len(), 1);
        assert_eq!(
            decoded.details[0].type_url,
            "type.googleapis.com/google.rpc.RetryInfo"
        );
        let info = RetryInfo::decode(decoded.details[0].value.as_slice()).unwrap();
        assert_eq!(info.retry_delay.unwrap().seconds, 3);
        assert!(grpc_status(StatusCode::INTERNAL_SERVER_ERROR, None)
            .details()
            .is_empty());
    }
}
