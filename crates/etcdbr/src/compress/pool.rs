//! The codec workers: one thread per core, shared by every compression and decompression in
//! the process and alive as long as it is. Threads that came and went would each leave an
//! allocator arena behind, and codec state (deflate's tables, zstd's contexts) would be
//! allocated again for every block; a worker keeps its own in thread-locals instead.
//!
//! A task never waits for another task, so a pool of any size cannot deadlock; callers bound
//! how many of their tasks are in flight.

use std::io;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};

/// One block's encoding or decoding, run on a worker.
pub(super) type Task = Box<dyn FnOnce() + Send>;

fn pool() -> &'static Mutex<Sender<Task>> {
    static POOL: OnceLock<Mutex<Sender<Task>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..super::cores() {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("etcdbr-codec-{i}"))
                .spawn(move || worker(&rx));
            if let Err(e) = spawned {
                tracing::warn!("cannot start a codec worker: {e}");
            }
        }
        Mutex::new(tx)
    })
}

fn worker(tasks: &Mutex<Receiver<Task>>) {
    loop {
        let task = match tasks.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(task) = task else { return };
        task();
    }
}

/// A handle to the workers, cloned once per compression or decompression.
#[derive(Clone)]
pub(super) struct Workers(Sender<Task>);

impl Workers {
    /// The process's workers (started on first use).
    pub(super) fn get() -> io::Result<Workers> {
        let tx = pool()
            .lock()
            .map_err(|_| io::Error::other("the codec workers are gone"))?
            .clone();
        Ok(Workers(tx))
    }

    /// Runs `task` on a worker.
    pub(super) fn run(&self, task: impl FnOnce() + Send + 'static) -> io::Result<()> {
        self.0
            .send(Box::new(task))
            .map_err(|_| io::Error::other("the codec workers stopped"))
    }
}
