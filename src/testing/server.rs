//! The receiver's runtime thread: accept loop, TLS handshakes, HTTP/1.1 + HTTP/2
//! connections, and dispatch between OTLP/HTTP and OTLP/gRPC.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
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
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, Notify};
use tokio_rustls::TlsAcceptor;

use super::fault::{race, refusing, Conn, Either, Fault};
use super::{grpc, metrics, otlp_http, Shared};

/// A client that has not finished its TLS handshake by then is dropped (and counted as a failure).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
/// How long to keep trying to bind the port again after a `Fault::Refuse`, and the pause
/// between tries.
const REBIND_FOR: Duration = Duration::from_secs(2);
const REBIND_BACKOFF: Duration = Duration::from_millis(10);
/// Listen backlog when listening again after a `Fault::Refuse`.
const BACKLOG: u32 = 1024;

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

/// The listening side of the port: listening, or (under `Fault::Refuse`) not.
enum Port {
    Listening(TcpListener),
    /// Bound but not listening: connections are refused, and nobody else can take the port.
    Reserved(TcpSocket),
    /// Not bound at all (binding it again failed); the error says why.
    Closed(String),
}

impl Port {
    /// Brings the port to the wanted state: refusing or listening.
    async fn apply(self, refuse: bool, addr: SocketAddr) -> Port {
        match (self, refuse) {
            (Port::Listening(listener), true) => {
                // Closing the listener also resets the connections waiting in its backlog.
                drop(listener);
                reserve(addr).await
            }
            (Port::Closed(_), true) => reserve(addr).await,
            (Port::Reserved(socket), false) => match socket.listen(BACKLOG) {
                Ok(listener) => Port::Listening(listener),
                Err(_) => rebind(addr).await,
            },
            (Port::Closed(_), false) => rebind(addr).await,
            (port, _) => port,
        }
    }

    fn error(&self) -> Option<String> {
        match self {
            Port::Closed(error) => Some(error.clone()),
            _ => None,
        }
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Our own closed connections linger in TIME_WAIT on this port.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// Binds `addr` without listening, retrying for a while.
async fn reserve(addr: SocketAddr) -> Port {
    retry_bind(addr, Port::Reserved).await
}

/// Binds `addr` and listens, retrying for a while.
async fn rebind(addr: SocketAddr) -> Port {
    retry_bind(addr, |socket| match socket.listen(BACKLOG) {
        Ok(listener) => Port::Listening(listener),
        Err(e) => Port::Closed(format!("listen: {e}")),
    })
    .await
}

async fn retry_bind(addr: SocketAddr, then: impl Fn(TcpSocket) -> Port) -> Port {
    let deadline = tokio::time::Instant::now() + REBIND_FOR;
    loop {
        let port = match bind(addr) {
            Ok(socket) => then(socket),
            Err(e) => Port::Closed(format!("bind: {e}")),
        };
        if !matches!(port, Port::Closed(_)) || tokio::time::Instant::now() >= deadline {
            return port;
        }
        tokio::time::sleep(REBIND_BACKOFF).await;
    }
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, shared: Arc<Shared>) {
    let Ok(addr) = listener.local_addr() else {
        return;
    };
    let mut control = shared.control.subscribe();
    let mut port = Port::Listening(listener);
    loop {
        let wanted = *control.borrow_and_update();
        port = port.apply(wanted.refuse, addr).await;
        shared.acknowledge(
            wanted.generation,
            if wanted.refuse { None } else { port.error() },
        );
        let Port::Listening(listener) = &port else {
            // Refusing (or unable to listen): only a change of the fault can help.
            if control.changed().await.is_err() {
                return;
            }
            continue;
        };
        let accepted = match race(listener.accept(), control.changed()).await {
            Either::Left(accepted) => accepted,
            Either::Right(Ok(())) => continue,
            Either::Right(Err(_)) => return,
        };
        let stream = match accepted {
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

/// Serves HTTP/1.1 or HTTP/2 (detected from the connection preface) until the client hangs
/// up, a handler cuts the connection, or the receiver starts refusing connections.
async fn serve_connection<S>(stream: S, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = Conn {
        shared: Arc::clone(&shared),
        kill: Arc::new(Notify::new()),
    };
    let kill = Arc::clone(&conn.kill);
    let service = service_fn(move |request: Request<Incoming>| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(dispatch(request, conn).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's HTTP/1 header read timeout (on by default) needs a timer.
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let serving = builder.serve_connection(TokioIo::new(stream), service);
    let cut = race(kill.notified(), refusing(&shared.control));
    // Protocol errors and hang-ups end this connection only; nobody is left to tell. A cut
    // drops the connection, closing the socket without an answer.
    let _ = race(serving, cut).await;
}

async fn dispatch(request: Request<Incoming>, conn: Conn) -> Response<tonic::body::Body> {
    if metrics::is_metrics(&request) {
        let grpc = is_grpc(&request);
        return metrics::handle(request, conn, grpc).await;
    }
    let plan = conn.shared.next_fault();
    if plan.fault == Some(Fault::Refuse) {
        return conn.cut().await;
    }
    if is_grpc(&request) {
        grpc::handle(request, conn, plan).await
    } else {
        otlp_http::handle(request, conn, plan).await
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
