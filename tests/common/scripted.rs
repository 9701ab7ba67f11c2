//! A scripted HTTP/1.1 server on loopback: it records the head of every request that reaches
//! it and answers each with the next of its canned responses (the last one repeats). It plays
//! what the `testing` receiver cannot: a redirecting collector, the host a redirect names, a
//! proxy, a collector whose error text is hostile.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as it arrived: its request line and headers (names lower-cased).
#[derive(Debug, Clone)]
pub struct Seen {
    pub line: String,
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct Scripted {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Scripted {
    /// Answers the n-th request with `responses[n]` (the last one from then on): each a raw
    /// response head without `Content-Length` or `Connection`, which are added, and a body.
    pub fn start(responses: Vec<(String, Vec<u8>)>) -> Self {
        assert!(!responses.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen_by_server, stop_server) = (Arc::clone(&seen), Arc::clone(&stop));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_server.load(Ordering::Acquire) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let _ = serve(stream, &seen_by_server, &responses);
            }
        });
        Self { addr, seen, stop }
    }

    /// A server answering every request with `status` and an empty body.
    pub fn answering(status: &str) -> Self {
        Self::start(vec![(format!("HTTP/1.1 {status}\r\n"), Vec::new())])
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
    }
}

fn serve(
    stream: TcpStream,
    seen: &Mutex<Vec<Seen>>,
    responses: &[(String, Vec<u8>)],
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.trim_end().split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let body_len = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0usize);
    let mut body = vec![0; body_len.min(64 << 20)];
    reader.read_exact(&mut body)?;
    let n = {
        let mut seen = seen.lock().unwrap();
        seen.push(Seen {
            line: line.trim_end().to_owned(),
            headers,
            body_len,
        });
        seen.len() - 1
    };
    let (head, body) = &responses[n.min(responses.len() - 1)];
    let mut stream = stream;
    write!(
        stream,
        "{head}content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    stream.flush()
}
