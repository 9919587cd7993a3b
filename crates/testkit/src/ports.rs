//! Free loopback ports.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};

static NEXT: AtomicU16 = AtomicU16::new(0);

/// First port drawn.
const LOW: u16 = 20_000;
/// Ports drawn: 20000-32699, below Linux's ephemeral range (32768-60999), so that the local
/// port of some outgoing connection cannot take a port between this check and the server's
/// bind (seen as etcd failing with "address already in use").
const SPAN: u16 = 12_700;

/// A loopback port that was free a moment ago. Ports are drawn from a per-process sequence
/// (offset by the process id, so parallel test binaries rarely collide), and each is checked by
/// binding it.
#[must_use]
pub fn free_port() -> u16 {
    let offset = (std::process::id() % u32::from(SPAN / 20)) as u16 * 20;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + (offset + n % SPAN) % SPAN;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
