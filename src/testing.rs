//! An in-process OTLP/HTTP log receiver for tests.
//!
//! [`OtlpReceiver`] listens on a free loopback port, accepts protobuf
//! `ExportLogsServiceRequest`s on any path ending in `/v1/logs` and keeps
//! everything it receives, so a test can assert on exactly what went over
//! the wire: resource attributes, log attributes, bodies and request
//! headers. It runs on a plain thread, so no async runtime is needed.
//!
//! Point an exporter at [`OtlpReceiver::endpoint`] if it appends
//! `/v1/logs` itself (OTLP exporters do this for a base endpoint), or at
//! [`OtlpReceiver::logs_url`] if it expects the full URL.
//!
//! ```rust,no_run
//! use std::time::Duration;
//! use zenml_otel::testing::OtlpReceiver;
//!
//! let receiver = OtlpReceiver::start()?;
//! // Configure the exporter with `receiver.endpoint()`, then run the code under test.
//! let records = receiver.wait_for_records(1, Duration::from_secs(5));
//! assert_eq!(records[0].body().as_deref(), Some("step finished"));
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fmt;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use tiny_http::{Header, Method, Request, Response, Server};

/// A running OTLP/HTTP receiver on `127.0.0.1`.
///
/// Dropping it stops the server thread and closes the port.
pub struct OtlpReceiver {
    addr: SocketAddr,
    server: Arc<Server>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    arrived: Condvar,
    stopping: AtomicBool,
}

#[derive(Default)]
struct State {
    requests: Vec<ReceivedRequest>,
    records: Vec<ReceivedRecord>,
}

/// One decoded export request, as received.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    /// Request path, without any query string.
    pub path: String,
    /// Request headers in arrival order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The decoded request body.
    pub body: ExportLogsServiceRequest,
}

/// One log record, with the resource and scope it was sent under.
#[derive(Debug, Clone)]
pub struct ReceivedRecord {
    /// Attributes of the record's resource.
    pub resource: Vec<KeyValue>,
    /// Name of the record's instrumentation scope (empty if none was sent).
    pub scope_name: String,
    /// The record itself.
    pub record: LogRecord,
}

impl OtlpReceiver {
    /// Binds `127.0.0.1:0` and starts serving on a background thread.
    pub fn start() -> io::Result<OtlpReceiver> {
        // Binding ourselves gives us the chosen port without parsing tiny_http's ListenAddr.
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        let server = Arc::new(Server::from_listener(listener, None).map_err(io::Error::other)?);
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn({
                let server = Arc::clone(&server);
                let shared = Arc::clone(&shared);
                move || serve(&server, &shared)
            })?;
        Ok(OtlpReceiver {
            addr,
            server,
            shared,
            thread: Some(thread),
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:4318`, with no path.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Full logs URL, e.g. `http://127.0.0.1:4318/v1/logs`.
    pub fn logs_url(&self) -> String {
        format!("{}/v1/logs", self.endpoint())
    }

    /// Every successfully decoded request so far, in arrival order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Every log record so far, flattened across requests, resources and scopes.
    pub fn records(&self) -> Vec<ReceivedRecord> {
        self.shared.lock().records.clone()
    }

    /// Number of log records received so far.
    pub fn record_count(&self) -> usize {
        self.shared.lock().records.len()
    }

    /// Blocks until at least `n` records have arrived or `timeout` passes,
    /// then returns all records so far either way.
    pub fn wait_for_records(&self, n: usize, timeout: Duration) -> Vec<ReceivedRecord> {
        let (state, _) = self
            .shared
            .arrived
            .wait_timeout_while(self.shared.lock(), timeout, |s| s.records.len() < n)
            .unwrap_or_else(|e| e.into_inner());
        state.records.clone()
    }
}

impl fmt::Debug for OtlpReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpReceiver")
            .field("addr", &self.addr)
            .field("record_count", &self.record_count())
            .finish_non_exhaustive()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        // Set before unblocking so the server thread can tell shutdown from an accept error.
        self.shared.stopping.store(true, Ordering::Release);
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl ReceivedRequest {
    /// First value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl ReceivedRecord {
    /// String form of resource attribute `key`; see [`ReceivedRecord::attr_str`].
    pub fn resource_attr(&self, key: &str) -> Option<String> {
        find_attr(&self.resource, key).and_then(value_string)
    }

    /// Raw value of log record attribute `key`.
    pub fn attr(&self, key: &str) -> Option<&Value> {
        find_attr(&self.record.attributes, key)
    }

    /// String form of log record attribute `key`: strings as they are,
    /// ints, bools and doubles via `to_string`, `None` for other kinds.
    pub fn attr_str(&self, key: &str) -> Option<String> {
        self.attr(key).and_then(value_string)
    }

    /// The record body, if it is a string.
    pub fn body(&self) -> Option<String> {
        match self.record.body.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide what was received from the others.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn push(&mut self, request: ReceivedRequest) {
        for resource_logs in &request.body.resource_logs {
            let resource = resource_logs
                .resource
                .as_ref()
                .map(|r| r.attributes.clone())
                .unwrap_or_default();
            for scope_logs in &resource_logs.scope_logs {
                let scope_name = scope_logs
                    .scope
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
                self.records
                    .extend(scope_logs.log_records.iter().map(|record| ReceivedRecord {
                        resource: resource.clone(),
                        scope_name: scope_name.clone(),
                        record: record.clone(),
                    }));
            }
        }
        self.requests.push(request);
    }
}

fn serve(server: &Server, shared: &Shared) {
    loop {
        match server.recv() {
            Ok(request) => handle(request, shared),
            Err(_) if shared.stopping.load(Ordering::Acquire) => return,
            // An accept error stops tiny_http's listener, but keep answering
            // requests already queued and wait for Drop to unblock us.
            Err(_) => continue,
        }
    }
}

fn handle(mut request: Request, shared: &Shared) {
    let response = match decode(&mut request) {
        Ok(received) => {
            // Store before responding so a caller that saw the 200 also sees the records.
            shared.lock().push(received);
            shared.arrived.notify_all();
            let body = ExportLogsServiceResponse::default().encode_to_vec();
            Response::from_data(body).with_header(
                Header::from_bytes("Content-Type", "application/x-protobuf")
                    .expect("static header is valid"),
            )
        }
        Err((status, message)) => Response::from_string(message).with_status_code(status),
    };
    // The client may already have hung up; there is no one left to tell.
    let _ = request.respond(response);
}

fn decode(request: &mut Request) -> Result<ReceivedRequest, (u16, String)> {
    let url = request.url();
    let path = url.split('?').next().unwrap_or(url).to_owned();
    if !path.ends_with("/v1/logs") {
        return Err((404, format!("no OTLP logs endpoint at {path}\n")));
    }
    if *request.method() != Method::Post {
        return Err((405, "OTLP logs endpoint accepts POST only\n".into()));
    }
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|h| {
            let name = h.field.as_str().as_str().to_ascii_lowercase();
            (name, h.value.as_str().to_owned())
        })
        .collect();
    let encoding = headers
        .iter()
        .find(|(k, _)| k == "content-encoding")
        .map_or("identity", |(_, v)| v.as_str())
        .to_ascii_lowercase();
    let mut raw = Vec::new();
    request
        .as_reader()
        .read_to_end(&mut raw)
        .map_err(|e| (400, format!("failed to read request body: {e}\n")))?;
    // Collectors forwarding to us (rotel does) gzip their requests.
    let bytes = match encoding.as_str() {
        "identity" => raw,
        "gzip" => {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(raw.as_slice())
                .read_to_end(&mut plain)
                .map_err(|e| (400, format!("invalid gzip body: {e}\n")))?;
            plain
        }
        other => return Err((415, format!("unsupported content-encoding `{other}`\n"))),
    };
    let body = ExportLogsServiceRequest::decode(bytes.as_slice())
        .map_err(|e| (400, format!("invalid ExportLogsServiceRequest: {e}\n")))?;
    Ok(ReceivedRequest {
        path,
        headers,
        body,
    })
}

fn find_attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()
}

fn value_string(value: &Value) -> Option<String> {
    match value {
        Value::StringValue(s) => Some(s.clone()),
        Value::BoolValue(b) => Some(b.to_string()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope};
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn export_request(bodies: &[&str]) -> ExportLogsServiceRequest {
        let log_records = bodies
            .iter()
            .map(|body| LogRecord {
                body: Some(AnyValue {
                    value: Some(Value::StringValue((*body).into())),
                }),
                attributes: vec![
                    kv("zenml.step", Value::StringValue("train".into())),
                    kv("attempt", Value::IntValue(2)),
                ],
                ..Default::default()
            })
            .collect();
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", Value::StringValue("pipeline".into())),
                        kv("retry", Value::BoolValue(true)),
                    ],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "zenml-otel".into(),
                        ..Default::default()
                    }),
                    log_records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// Sends one raw HTTP/1.1 request and returns (status, headers+body text, raw body).
    fn post(
        receiver: &OtlpReceiver,
        path: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String, Vec<u8>) {
        let mut stream = TcpStream::connect(receiver.addr).unwrap();
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n",
            receiver.addr,
            body.len()
        );
        for (name, value) in extra {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&response[..split]).into_owned();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head, response[split + 4..].to_vec())
    }

    #[test]
    fn decodes_posted_logs() {
        let receiver = OtlpReceiver::start().unwrap();
        assert_eq!(
            receiver.logs_url(),
            format!("{}/v1/logs", receiver.endpoint())
        );

        let body = export_request(&["hello", "world"]).encode_to_vec();
        let (status, head, response) = post(
            &receiver,
            "/api/otel/v1/logs",
            &[("Authorization", "Bearer secret")],
            &body,
        );
        assert_eq!(status, 200, "{head}");
        assert!(head
            .to_ascii_lowercase()
            .contains("content-type: application/x-protobuf"));
        ExportLogsServiceResponse::decode(response.as_slice()).unwrap();

        // Records are stored before the 200 goes out, so no waiting is needed.
        let records = receiver.records();
        assert_eq!(records.len(), 2);
        assert_eq!(receiver.record_count(), 2);
        let first = &records[0];
        assert_eq!(first.body().as_deref(), Some("hello"));
        assert_eq!(records[1].body().as_deref(), Some("world"));
        assert_eq!(first.scope_name, "zenml-otel");
        assert_eq!(
            first.resource_attr("service.name").as_deref(),
            Some("pipeline")
        );
        assert_eq!(first.resource_attr("retry").as_deref(), Some("true"));
        assert_eq!(first.resource_attr("missing"), None);
        assert_eq!(first.attr_str("zenml.step").as_deref(), Some("train"));
        assert_eq!(first.attr_str("attempt").as_deref(), Some("2"));
        assert!(matches!(first.attr("attempt"), Some(Value::IntValue(2))));

        let requests = receiver.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].path, "/api/otel/v1/logs");
        assert_eq!(requests[0].header("AUTHORIZATION"), Some("Bearer secret"));
        assert!(requests[0]
            .headers
            .iter()
            .any(|(k, _)| k == "authorization"));
    }

    #[test]
    fn rejects_bad_bodies_and_paths() {
        let receiver = OtlpReceiver::start().unwrap();

        let (status, _, body) = post(&receiver, "/v1/logs", &[], b"\xff\xff\xff\xff");
        assert_eq!(status, 400);
        assert!(String::from_utf8_lossy(&body).contains("invalid ExportLogsServiceRequest"));

        let valid = export_request(&["x"]).encode_to_vec();
        assert_eq!(post(&receiver, "/v1/traces", &[], &valid).0, 404);
        assert_eq!(
            post(&receiver, "/v1/logs", &[("Content-Encoding", "br")], &valid).0,
            415
        );

        assert!(receiver.requests().is_empty());
        assert_eq!(receiver.record_count(), 0);
    }

    #[test]
    fn wait_for_records_times_out_with_what_arrived() {
        let receiver = OtlpReceiver::start().unwrap();
        post(
            &receiver,
            "/v1/logs",
            &[],
            &export_request(&["only"]).encode_to_vec(),
        );

        let timeout = Duration::from_millis(200);
        let started = Instant::now();
        let records = receiver.wait_for_records(2, timeout);
        assert!(started.elapsed() >= timeout);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].body().as_deref(), Some("only"));

        // Already satisfied: returns at once.
        let started = Instant::now();
        assert_eq!(
            receiver.wait_for_records(1, Duration::from_secs(10)).len(),
            1
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn wait_for_records_wakes_on_arrival() {
        let receiver = OtlpReceiver::start().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                post(
                    &receiver,
                    "/v1/logs",
                    &[],
                    &export_request(&["late"]).encode_to_vec(),
                );
            });
            let records = receiver.wait_for_records(1, Duration::from_secs(10));
            assert_eq!(records.len(), 1);
        });
    }
}
