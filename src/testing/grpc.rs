//! OTLP/gRPC: the `LogsService/Export` call, served by tonic on the shared port.

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::codegen::Service;

use super::{header_pairs, Encoding, ReceivedRequest, Shared, MAX_BODY_BYTES};

/// The path of the one gRPC method the receiver implements.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// The request path, carried to [`Sink::export`] in the request extensions.
#[derive(Debug, Clone)]
struct GrpcPath(String);

/// Stores every exported request in the receiver's state.
struct Sink {
    shared: Arc<Shared>,
}

/// Answers one gRPC request (any path: unknown methods get `UNIMPLEMENTED` from tonic).
pub(super) async fn handle(
    mut request: Request<Incoming>,
    shared: Arc<Shared>,
) -> Response<tonic::body::Body> {
    let path = request.uri().path().to_owned();
    request.extensions_mut().insert(GrpcPath(path));
    let mut service = LogsServiceServer::new(Sink { shared })
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
        self.shared.store(ReceivedRequest {
            path,
            headers,
            encoding: Encoding::Grpc,
            raw: body.encode_to_vec(),
            body,
        });
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}
