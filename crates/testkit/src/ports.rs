//! Free loopback ports.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};

static NEXT: AtomicU16 = AtomicU16::new(0);

/// A loopback port that was free a moment ago. Ports are drawn from a per-process sequence in
/// 20000-60000 (offset by the process id) so parallel test binaries rarely collide, and each is
/// checked by binding it.
#[must_use]
pub fn free_port() -> u16 {
    let base = 20_000 + (std::process::id() % 2000) as u16 * 20;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (base - 20_000 + n) % 40_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
