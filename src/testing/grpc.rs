//! OTLP/gRPC: the `LogsService/Export` call, served by tonic on the shared port.

use http::{Request, Response};
use hyper::body::Incoming;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::codegen::Service;

use super::fault::{self, Conn, Fault, Plan};
use super::{header_pairs, Encoding, ReceivedRequest, MAX_BODY_BYTES};

/// The path of the one gRPC method the receiver implements.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// The request path, carried to [`Sink::export`] in the request extensions.
#[derive(Debug, Clone)]
struct GrpcPath(String);

/// Stores the exported request in the receiver's state, unless `plan` says otherwise.
struct Sink {
    conn: Conn,
    plan: Plan,
}

/// Answers one gRPC request (any path: unknown methods get `UNIMPLEMENTED` from tonic).
pub(super) async fn handle(
    mut request: Request<Incoming>,
    conn: Conn,
    plan: Plan,
) -> Response<tonic::body::Body> {
    let path = request.uri().path().to_owned();
    request.extensions_mut().insert(GrpcPath(path));
    let mut service = LogsServiceServer::new(Sink { conn, plan })
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .max_decoding_message_size(MAX_BODY_BYTES);
    match service.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

#[tonic::async_trait]
impl LogsService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let path = request
            .extensions()
            .get::<GrpcPath>()
            .map_or_else(|| EXPORT_PATH.to_owned(), |p| p.0.clone());
        let headers = header_pairs(&request.metadata().clone().into_headers());
        let body = request.into_inner();
        let limit = self.conn.shared.request_limit();
        if body.encoded_len() > limit {
            return Err(tonic::Status::out_of_range(format!(
                "Error, decoded message length too large: found {} bytes, the limit is: {limit} bytes",
                body.encoded_len()
            )));
        }
        let mut partial_success = None;
        match self.plan.fault.clone() {
            None | Some(Fault::Refuse) => {}
            Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
            Some(Fault::Status { code, retry_after }) => {
                let status = fault::http_status(code);
                if status.is_success() {
                    return Ok(tonic::Response::new(ExportLogsServiceResponse::default()));
                }
                return Err(fault::grpc_status(status, retry_after));
            }
            Some(Fault::PartialSuccess { rejected, message }) => {
                partial_success = Some(ExportLogsPartialSuccess {
                    rejected_log_records: rejected,
                    error_message: message,
                });
            }
            Some(Fault::Blackhole) => return self.conn.blackhole(self.plan.generation).await,
        }
        self.conn.shared.store(ReceivedRequest {
            path,
            headers,
            encoding: Encoding::Grpc,
            raw: body.encode_to_vec(),
            body,
        });
        Ok(tonic::Response::new(ExportLogsServiceResponse {
            partial_success,
        }))
    }
}
