//! The threads storage calls run on: appends, spool intake, partial acks and releases,
//! and whatever part of an ack waits for the disk.
//!
//! Those calls block (fdatasync, sled's flush), so they cannot run on the async workers.
//! Leases and a delivered batch's ack (up to any flush it needs) are short, tens of
//! microseconds, and wait for no flush (a lease may read a chunk back from sled's file,
//! usually from the OS page cache): they run on the worker itself ([`run_here`]).
//! tokio's blocking pool is not the place either: it grows to 512 threads, and 100
//! delivery lanes grew it to ~120, each keeping ~0.4 MiB resident (e2e_bench's hec100
//! peaked at 89-95 MiB; 51-55 MiB with 8 threads). Capping tokio's pool instead would put
//! storage behind DNS lookups, which run there too: a resolver that does not answer would
//! hold every thread. So storage gets its own pool: at most [`limit`] threads, started on
//! demand, each leaving after [`KEEP_ALIVE`] idle. No storage call waits on another one, so
//! a small pool queues work but cannot deadlock.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;

/// How long an idle thread waits for work before it exits.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);

static LIMIT: OnceLock<usize> = OnceLock::new();
static POOL: OnceLock<StoragePool> = OnceLock::new();

/// Sets the thread limit of the process's pool. Only before its first use: afterwards (or
/// a second time) it returns the limit in force as the error.
pub fn set_limit(threads: usize) -> Result<(), usize> {
    LIMIT.set(threads.max(1)).map_err(|_| limit())
}

/// The process's thread limit: as set, else 4 per core and at least 8.
pub fn limit() -> usize {
    *LIMIT.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        (4 * cores).max(8)
    })
}

/// Runs `call` on the process's storage pool; await the result (or drop the handle: the
/// call still runs, and its result is dropped on the pool's thread).
pub fn spawn<F, R>(call: F) -> StorageTask<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    POOL.get_or_init(|| StoragePool::new(limit())).spawn(call)
}

/// Runs a storage call that waits for no flush (a lease, an ack up to its flush: see
/// `Queue::ack_without_waiting`) on the calling thread, an async worker included: a trip
/// through the pool costs two thread wake-ups, more CPU than such a call itself. A panic
/// comes back as the pool's would.
pub fn run_here<R>(call: impl FnOnce() -> R) -> Result<R, StorageTaskError> {
    catch_unwind(AssertUnwindSafe(call))
        .map_err(|payload| StorageTaskError::Panicked(panic_message(payload)))
}

type Job = Box<dyn FnOnce() + Send>;

/// A bounded pool of threads for blocking calls.
pub struct StoragePool {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    limit: usize,
    keep_alive: Duration,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    threads: usize,
    /// Threads waiting for work, and how many of them were woken and not yet running:
    /// a job finds an idle thread only if `idle > woken`.
    idle: usize,
    woken: usize,
}

impl StoragePool {
    pub fn new(limit: usize) -> StoragePool {
        StoragePool::with_keep_alive(limit, KEEP_ALIVE)
    }

    fn with_keep_alive(limit: usize, keep_alive: Duration) -> StoragePool {
        StoragePool {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                work: Condvar::new(),
                limit: limit.max(1),
                keep_alive,
            }),
        }
    }

    /// Queues `call`; an idle thread takes it, else a new one while under the limit, else
    /// the first thread to finish its call.
    pub fn spawn<F, R>(&self, call: F) -> StorageTask<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(run_here(call));
        });
        let mut state = lock(&self.shared.state);
        state.jobs.push_back(job);
        if state.idle > state.woken {
            state.woken += 1;
            self.shared.work.notify_one();
        } else if state.threads < self.shared.limit {
            let shared = self.shared.clone();
            let started = std::thread::Builder::new()
                .name("raxe-storage".into())
                .spawn(move || shared.run());
            // Without a new thread the job waits for a running one; with none at all the
            // caller hears of it when the job is dropped unrun (see `StorageTask`).
            if started.is_ok() {
                state.threads += 1;
            } else if state.threads == 0 {
                state.jobs.clear();
            }
        }
        StorageTask { rx }
    }

    /// Threads alive now.
    pub fn threads(&self) -> usize {
        lock(&self.shared.state).threads
    }
}

impl Shared {
    fn run(&self) {
        let mut state = lock(&self.state);
        loop {
            if let Some(job) = state.jobs.pop_front() {
                drop(state);
                job();
                state = lock(&self.state);
                continue;
            }
            state.idle += 1;
            let (next, wait) = self
                .work
                .wait_timeout(state, self.keep_alive)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            state = next;
            state.idle -= 1;
            // Any wake-up takes one pending notification, even when another thread took
            // the job meant for it: a notification left pending would make the next job
            // look taken care of while every thread sleeps.
            if state.woken > 0 {
                state.woken -= 1;
            } else if wait.timed_out() && state.jobs.is_empty() {
                state.threads -= 1;
                return;
            }
        }
    }
}

/// Jobs run outside the lock and catch their own panics, so it is never poisoned by one;
/// should it be, the queue itself is still consistent.
fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// Why a storage call gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageTaskError {
    #[error("storage call panicked: {0}")]
    Panicked(String),
    #[error("storage call was not run: no thread could be started")]
    NotRun,
}

/// The result of a call given to [`spawn`].
pub struct StorageTask<R> {
    rx: oneshot::Receiver<Result<R, StorageTaskError>>,
}

impl<R> Future for StorageTask<R> {
    type Output = Result<R, StorageTaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|received| match received {
                Ok(result) => result,
                Err(_) => Err(StorageTaskError::NotRun),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn calls_run_on_at_most_limit_threads_and_all_finish() {
        let pool = StoragePool::new(3);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let (running, most) = (running.clone(), most.clone());
                pool.spawn(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    // The first calls wait (5 s at most) until three run at once.
                    let deadline = std::time::Instant::now() + Duration::from_secs(5);
                    while i < 3
                        && running.load(Ordering::SeqCst) < 3
                        && std::time::Instant::now() < deadline
                    {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                    running.fetch_sub(1, Ordering::SeqCst);
                    i * 2
                })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            assert_eq!(task.await, Ok(i * 2));
        }
        assert_eq!(
            most.load(Ordering::SeqCst),
            3,
            "used every thread, never more"
        );
        assert_eq!(pool.threads(), 3);
    }

    #[tokio::test]
    async fn a_panic_is_an_error_and_the_thread_goes_on() {
        let pool = StoragePool::new(1);
        let failed = pool.spawn(|| -> u8 { panic!("boom") }).await;
        assert_eq!(failed, Err(StorageTaskError::Panicked("boom".into())));
        assert_eq!(pool.spawn(|| 7).await, Ok(7));
        assert_eq!(pool.threads(), 1);
    }

    #[tokio::test]
    async fn a_dropped_handle_still_runs_its_call() {
        let pool = StoragePool::new(1);
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        drop(pool.spawn(move || r.fetch_add(1, Ordering::SeqCst)));
        assert_eq!(pool.spawn(|| ()).await, Ok(()));
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }

    /// Many callers, short calls, a long keep-alive: a call queued while every thread
    /// idles (a lost wake-up) would wait out the keep-alive and trip the timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_call_waits_for_an_idle_thread_to_time_out() {
        let pool = Arc::new(StoragePool::with_keep_alive(2, Duration::from_secs(600)));
        let callers: Vec<_> = (0..16)
            .map(|c| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    for i in 0..2_000u64 {
                        let spin = (i * 7 + c) % 3;
                        let got = pool
                            .spawn(move || {
                                for _ in 0..spin * 200 {
                                    std::hint::spin_loop();
                                }
                                i
                            })
                            .await;
                        assert_eq!(got, Ok(i));
                        if i % 50 == 0 {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                })
            })
            .collect();
        let all = futures_join(callers);
        tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .expect("a call sat in the queue while threads idled");
        // Once every thread idles, every wake-up sent is taken (a thread just woken may
        // take a moment to): a stale one would keep the next call from waking a thread.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (idle, threads, woken, queued) = {
                let state = lock(&pool.shared.state);
                (state.idle, state.threads, state.woken, state.jobs.len())
            };
            if (idle == threads && woken == 0) || std::time::Instant::now() > deadline {
                assert_eq!((woken, queued), (0, 0));
                assert!(threads <= 2);
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn futures_join(handles: Vec<tokio::task::JoinHandle<()>>) {
        for handle in handles {
            handle.await.unwrap();
        }
    }

    #[tokio::test]
    async fn idle_threads_leave_and_come_back() {
        let pool = StoragePool::with_keep_alive(2, Duration::from_millis(20));
        assert_eq!(pool.spawn(|| 1).await, Ok(1));
        assert_eq!(pool.threads(), 1);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while pool.threads() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(pool.threads(), 0, "the idle thread left");
        assert_eq!(pool.spawn(|| 2).await, Ok(2));
    }
}
