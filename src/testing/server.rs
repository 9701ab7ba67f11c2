//! The receiver's runtime thread: accept loop, TLS handshakes, HTTP/1.1 + HTTP/2
//! connections, and dispatch between OTLP/HTTP and OTLP/gRPC.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use super::{grpc, otlp_http, Shared};

/// A client that has not finished its TLS handshake by then is dropped (and counted as a failure).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// The server thread; dropping it stops the runtime and joins the thread.
#[derive(Debug)]
pub(super) struct Server {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `listener` on a new thread running its own current-thread runtime.
    pub(super) fn spawn(
        listener: std::net::TcpListener,
        tls: Option<TlsAcceptor>,
        shared: Arc<Shared>,
    ) -> io::Result<Server> {
        listener.set_nonblocking(true)?;
        let (stop, stopped) = oneshot::channel::<()>();
        // The runtime is built, used and dropped on the server thread only: dropping a runtime
        // panics inside an async context, and the caller may well be in one.
        let (ready, started) = std::sync::mpsc::sync_channel::<io::Result<()>>(1);
        let thread = std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready.send(Ok(()));
                    tokio::spawn(accept_loop(listener, tls, shared));
                    // A send or a dropped sender both mean stop.
                    let _ = stopped.await;
                });
                // Dropping the runtime cancels the accept loop and every connection
                // task, closing the listening socket and all open connections.
                drop(runtime);
            })?;
        let server = Server {
            stop: Some(stop),
            thread: Some(thread),
        };
        match started.recv() {
            Ok(Ok(())) => Ok(server),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::other(
                "the OTLP receiver thread died while starting",
            )),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(_) => {
                // Per-connection errors (reset before accept, EMFILE...) must not end the loop.
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        match tls.clone() {
            None => {
                tokio::spawn(serve_connection(stream, shared));
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, shared).await,
                        Ok(Err(_)) | Err(_) => shared.tls_failed(),
                    }
                });
            }
        }
    }
}

/// Serves HTTP/1.1 or HTTP/2 (detected from the connection preface) until the client hangs up.
async fn serve_connection<S>(stream: S, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(dispatch(request, shared).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's HTTP/1 header read timeout (on by default) needs a timer.
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    // Protocol errors and hang-ups end this connection only; nobody is left to tell.
    let _ = builder
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn dispatch(request: Request<Incoming>, shared: Arc<Shared>) -> Response<tonic::body::Body> {
    if is_grpc(&request) {
        grpc::handle(request, shared).await
    } else {
        otlp_http::handle(request, &shared).await
    }
}

/// `application/grpc`, `application/grpc+proto` and so on.
fn is_grpc<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.trim_start().as_bytes();
            v.len() >= 16 && v[..16].eq_ignore_ascii_case(b"application/grpc")
        })
}
