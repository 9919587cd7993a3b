//! A fault-injecting HTTP/1.1 proxy in front of a real storage server: it forwards requests and
//! answers chosen ones with an error status, resets their connection, or stalls them, so retry
//! and abort paths run against real protocols. Every connection carries one request
//! (`Connection: close` both ways).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A request as the proxy saw it, for a [`FaultRule`] to judge.
#[derive(Debug)]
pub struct RequestHead {
    /// `GET`, `PUT`, …
    pub method: String,
    /// Path with query, as sent.
    pub target: String,
    /// Header names (as sent) and values (trimmed), in order.
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    /// The first header called `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Decides from a request whether to fail it.
pub type FaultRule = dyn Fn(&RequestHead) -> Option<Fault> + Send + Sync;

/// What the proxy does to a request it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status (and an S3-style XML error body).
    Status(u16),
    /// Close the connection without answering (a reset).
    Reset,
    /// Wait this long, then forward the request (a server that stalls).
    Stall(std::time::Duration),
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    failed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`host:port`) that answers the requests `rule` picks with 500.
    pub async fn start(
        upstream: &str,
        rule: impl Fn(&RequestHead) -> bool + Send + Sync + 'static,
    ) -> FaultProxy {
        FaultProxy::start_with(upstream, move |r| rule(r).then_some(Fault::Status(500))).await
    }

    /// Starts a proxy to `upstream` (`host:port`) that applies the fault `rule` returns.
    pub async fn start_with(
        upstream: &str,
        rule: impl Fn(&RequestHead) -> Option<Fault> + Send + Sync + 'static,
    ) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let failed = Arc::new(AtomicUsize::new(0));
        let (rule, upstream, counter): (Arc<FaultRule>, String, _) =
            (Arc::new(rule), upstream.to_owned(), Arc::clone(&failed));
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (rule, upstream, counter) =
                    (Arc::clone(&rule), upstream.clone(), Arc::clone(&counter));
                tokio::spawn(async move {
                    let _ = serve(conn, &upstream, rule.as_ref(), &counter).await;
                });
            }
        });
        FaultProxy {
            endpoint,
            failed,
            task,
        }
    }

    /// How many requests were failed so far.
    #[must_use]
    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }
}

async fn read_head(s: &mut TcpStream) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((buf, rest));
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "eof in headers",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Rewrites a header block to carry `Connection: close`.
fn close_headers(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

async fn serve(
    mut client: TcpStream,
    upstream: &str,
    rule: &FaultRule,
    failed: &AtomicUsize,
) -> std::io::Result<()> {
    let (head, mut body) = read_head(&mut client).await?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let request = RequestHead {
        method: first.next().unwrap_or_default().to_owned(),
        target: first.next().unwrap_or_default().to_owned(),
        headers: lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
            .collect(),
    };
    let len: usize = request
        .header("content-length")
        .map_or(0, |v| v.parse().unwrap_or(0));
    while body.len() < len {
        let mut chunk = vec![0u8; (len - body.len()).min(1 << 20)];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    match rule(&request) {
        None => {}
        Some(Fault::Stall(d)) => {
            failed.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(d).await;
        }
        Some(Fault::Reset) => {
            failed.fetch_add(1, Ordering::SeqCst);
            drop(client);
            return Ok(());
        }
        Some(Fault::Status(code)) => {
            failed.fetch_add(1, Ordering::SeqCst);
            let (name, reason) = match code {
                403 => ("AccessDenied", "Forbidden"),
                507 => ("InsufficientStorage", "Insufficient Storage"),
                503 => ("SlowDown", "Service Unavailable"),
                _ => ("InternalError", "Internal Server Error"),
            };
            let msg = format!("<Error><Code>{name}</Code><Message>injected</Message></Error>");
            let resp = format!(
                "HTTP/1.1 {code} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                msg.len()
            );
            client.write_all(resp.as_bytes()).await?;
            client.write_all(msg.as_bytes()).await?;
            return client.shutdown().await;
        }
    }
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(&close_headers(&head)).await?;
    up.write_all(&body).await?;
    let (rhead, rest) = read_head(&mut up).await?;
    client.write_all(&close_headers(&rhead)).await?;
    client.write_all(&rest).await?;
    tokio::io::copy(&mut up, &mut client).await?;
    client.shutdown().await
}
