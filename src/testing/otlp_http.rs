//! OTLP/HTTP: `POST …/v1/logs` with a protobuf or JSON body, optionally gzip or zstd encoded.

use std::io::Read;
use std::sync::atomic::Ordering;

use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;

use super::fault::{self, Conn, Fault, Plan};
use super::{header_pairs, json, Encoding, ReceivedRequest, MAX_BODY_BYTES};

/// Why a request was refused: the status and a plain-text explanation.
#[derive(Debug)]
pub(super) struct Rejection {
    status: StatusCode,
    message: String,
}

impl Rejection {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Rejection {
        Rejection {
            status,
            message: message.into(),
        }
    }
}

/// Answers one OTLP/HTTP request, storing it if it decodes, unless `plan` says otherwise.
pub(super) async fn handle(
    request: Request<Incoming>,
    conn: Conn,
    plan: Plan,
) -> Response<tonic::body::Body> {
    let (parts, body) = request.into_parts();
    // Read the body even for requests about to be refused or faulted: closing a connection
    // with unread request bytes makes the kernel send a reset, which can destroy the
    // response in flight.
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(rejection) => return refuse(rejection),
    };
    let mut partial_success = None;
    match plan.fault {
        None | Some(Fault::Refuse) => {}
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::Status { code, retry_after }) => {
            return fault_status(&parts.headers, code, retry_after)
        }
        Some(Fault::PartialSuccess { rejected, message }) => {
            partial_success = Some(ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message: message,
            });
        }
        Some(Fault::Blackhole) => return conn.blackhole(plan.generation).await,
    }
    let proto_field_names = conn.shared.proto_field_names.load(Ordering::Acquire);
    let limit = conn.shared.request_limit();
    match decode(parts, body, proto_field_names, limit) {
        Ok(received) => {
            let encoding = received.encoding;
            // Store before responding so a caller that saw the 200 also sees the records.
            conn.shared.store(received);
            success(encoding, partial_success)
        }
        Err(rejection) => refuse(rejection),
    }
}

pub(super) fn refuse(rejection: Rejection) -> Response<tonic::body::Body> {
    let mut message = rejection.message;
    message.push('\n');
    respond(
        rejection.status,
        "text/plain; charset=utf-8",
        message.into_bytes(),
    )
}

/// The answer of a `Fault::Status`: that status, a `google.rpc.Status` body in the
/// request's encoding, and `Retry-After` if asked for.
pub(super) fn fault_status(
    headers: &HeaderMap,
    code: u16,
    retry_after: Option<u64>,
) -> Response<tonic::body::Body> {
    let status = fault::http_status(code);
    let mut response = match content_type(headers) {
        Ok(Encoding::Json) => respond(status, "application/json", fault::status_body_json(status)),
        _ => respond(
            status,
            "application/x-protobuf",
            fault::status_body_protobuf(status),
        ),
    };
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

fn success(
    encoding: Encoding,
    partial_success: Option<ExportLogsPartialSuccess>,
) -> Response<tonic::body::Body> {
    match (encoding, partial_success) {
        (Encoding::Json, None) => respond(StatusCode::OK, "application/json", b"{}".to_vec()),
        (Encoding::Json, Some(partial)) => {
            // OTLP/JSON: lowerCamelCase keys, 64-bit integers as strings.
            let body = serde_json::json!({
                "partialSuccess": {
                    "rejectedLogRecords": partial.rejected_log_records.to_string(),
                    "errorMessage": partial.error_message,
                }
            });
            respond(
                StatusCode::OK,
                "application/json",
                body.to_string().into_bytes(),
            )
        }
        (Encoding::Protobuf | Encoding::Grpc, partial_success) => respond(
            StatusCode::OK,
            "application/x-protobuf",
            ExportLogsServiceResponse { partial_success }.encode_to_vec(),
        ),
    }
}

pub(super) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response<tonic::body::Body> {
    let mut response = Response::new(tonic::body::Body::new(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub(super) async fn read_body(body: Incoming) -> Result<Bytes, Rejection> {
    Ok(Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<LengthLimitError>() {
                too_large()
            } else {
                Rejection::new(
                    StatusCode::BAD_REQUEST,
                    format!("failed to read request body: {e}"),
                )
            }
        })?
        .to_bytes())
}

fn decode(
    parts: http::request::Parts,
    compressed: Bytes,
    proto_field_names: bool,
    limit: usize,
) -> Result<ReceivedRequest, Rejection> {
    let path = parts.uri.path().to_owned();
    if !path.ends_with("/v1/logs") {
        return Err(Rejection::new(
            StatusCode::NOT_FOUND,
            format!("no OTLP logs endpoint at {path}"),
        ));
    }
    if parts.method != Method::POST {
        return Err(Rejection::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "OTLP logs endpoint accepts POST only",
        ));
    }
    let encoding = content_type(&parts.headers)?;
    let compression = content_encoding(&parts.headers)?;
    let raw = compression.decode(&compressed)?;
    if raw.len() > limit {
        return Err(Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body of {} bytes exceeds {limit} bytes", raw.len()),
        ));
    }
    let body = match encoding {
        Encoding::Json => json::decode(&raw, proto_field_names),
        Encoding::Protobuf | Encoding::Grpc => ExportLogsServiceRequest::decode(raw.as_slice())
            .map_err(|e| format!("invalid ExportLogsServiceRequest: {e}")),
    }
    .map_err(|message| Rejection::new(StatusCode::BAD_REQUEST, message))?;
    Ok(ReceivedRequest {
        path,
        headers: header_pairs(&parts.headers),
        encoding,
        raw,
        body,
    })
}

/// The body encoding named by `content-type` (parameters such as `charset` are ignored).
pub(super) fn content_type(headers: &HeaderMap) -> Result<Encoding, Rejection> {
    let value = headers
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let media_type = value.split(';').next().unwrap_or("").trim();
    if media_type.eq_ignore_ascii_case("application/x-protobuf")
        || media_type.eq_ignore_ascii_case("application/protobuf")
    {
        Ok(Encoding::Protobuf)
    } else if media_type.eq_ignore_ascii_case("application/json") {
        Ok(Encoding::Json)
    } else {
        Err(Rejection::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported content-type `{value}`: OTLP/HTTP takes application/x-protobuf or application/json"
            ),
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compression {
    Identity,
    Gzip,
    Zstd,
}

pub(super) fn content_encoding(headers: &HeaderMap) -> Result<Compression, Rejection> {
    let Some(value) = headers.get(CONTENT_ENCODING) else {
        return Ok(Compression::Identity);
    };
    let value = String::from_utf8_lossy(value.as_bytes());
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "identity" => Ok(Compression::Identity),
        "gzip" | "x-gzip" => Ok(Compression::Gzip),
        "zstd" => Ok(Compression::Zstd),
        _ => Err(Rejection::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported content-encoding `{value}`"),
        )),
    }
}

impl Compression {
    /// Decompresses `body`, refusing to inflate past [`MAX_BODY_BYTES`].
    pub(super) fn decode(self, body: &[u8]) -> Result<Vec<u8>, Rejection> {
        let (name, reader): (&str, Box<dyn Read + '_>) = match self {
            Compression::Identity => return Ok(body.to_vec()),
            // Collectors forwarding to us (rotel does) gzip their requests.
            Compression::Gzip => ("gzip", Box::new(flate2::read::MultiGzDecoder::new(body))),
            Compression::Zstd => (
                "zstd",
                Box::new(zstd::stream::read::Decoder::with_buffer(body).map_err(|e| {
                    Rejection::new(StatusCode::BAD_REQUEST, format!("invalid zstd body: {e}"))
                })?),
            ),
        };
        let mut plain = Vec::new();
        reader
            .take(MAX_BODY_BYTES as u64 + 1)
            .read_to_end(&mut plain)
            .map_err(|e| {
                Rejection::new(StatusCode::BAD_REQUEST, format!("invalid {name} body: {e}"))
            })?;
        if plain.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        Ok(plain)
    }
}

fn too_large() -> Rejection {
    Rejection::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body exceeds {MAX_BODY_BYTES} bytes"),
    )
}
