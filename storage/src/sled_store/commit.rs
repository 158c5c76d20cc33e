//! Group commit. Writers put their data into sled, take a ticket, and wait until a flush
//! that started after their write has finished. One waiter at a time (the leader) runs
//! the flush for everyone; the others sleep on a condvar. Two levels: `Flush` (sled's
//! own flush: survives kill -9; marker removal, queue drop, ack-journal rotation, acks
//! when the journal is broken) and `Sync` (flush + fdatasync of the data file: survives
//! power loss; required by appends).

use std::fs::File;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};

/// The hook through which every durability sync goes. The default calls
/// `File::sync_data` (fdatasync); tests inject one that records calls or fails.
pub trait Syncer: Send + Sync {
    /// Makes the data of `file` (at `path`; a file or a directory) durable.
    fn sync_data(&self, path: &Path, file: &File) -> io::Result<()>;
}

/// fdatasync through `File::sync_data`.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsSyncer;

impl Syncer for FsSyncer {
    fn sync_data(&self, _path: &Path, file: &File) -> io::Result<()> {
        file.sync_data()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Flush,
    Sync,
}

#[derive(Default)]
struct State {
    /// Tickets handed out; ticket n means "the n-th write into sled has completed".
    issued: u64,
    flushed: u64,
    synced: u64,
    /// Highest ticket some waiter needs synced.
    sync_wanted: u64,
    busy: bool,
    poisoned: Option<String>,
}

#[derive(Default)]
pub(crate) struct Committer {
    st: Mutex<State>,
    cv: Condvar,
}

impl Committer {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Call right after a write into sled has returned.
    pub(crate) fn ticket(&self) -> u64 {
        let mut st = self.lock();
        st.issued += 1;
        st.issued
    }

    /// Highest ticket known synced to disk.
    pub(crate) fn synced(&self) -> u64 {
        self.lock().synced
    }

    pub(crate) fn poisoned(&self) -> Option<String> {
        self.lock().poisoned.clone()
    }

    /// Poisons the committer from outside a flush: sled failed a write itself (and, in
    /// 0.34, keeps failing every later one until it is reopened).
    pub(crate) fn poison(&self, why: String) {
        let mut st = self.lock();
        if st.poisoned.is_none() {
            st.poisoned = Some(why);
        }
        self.cv.notify_all();
    }

    /// Returns once `ticket` is durable at `level`. `flush(sync)` does the work when this
    /// thread becomes the leader; an error poisons the committer for good.
    pub(crate) fn wait(
        &self,
        ticket: u64,
        level: Level,
        flush: &dyn Fn(bool) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut st = self.lock();
        if level == Level::Sync {
            st.sync_wanted = st.sync_wanted.max(ticket);
        }
        loop {
            if let Some(p) = &st.poisoned {
                return Err(p.clone());
            }
            let done = match level {
                Level::Flush => st.flushed >= ticket,
                Level::Sync => st.synced >= ticket,
            };
            if done {
                return Ok(());
            }
            if st.busy {
                st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // Become the leader: everything issued so far is covered by this flush.
            st.busy = true;
            let target = st.issued;
            let sync = st.sync_wanted > st.synced;
            drop(st);
            let res = catch_unwind(AssertUnwindSafe(|| flush(sync)))
                .unwrap_or_else(|_| Err("panic inside the storage engine's flush".into()));
            st = self.lock();
            st.busy = false;
            match res {
                Ok(()) => {
                    st.flushed = st.flushed.max(target);
                    if sync {
                        st.synced = st.synced.max(target);
                    }
                }
                Err(e) => st.poisoned = Some(e),
            }
            self.cv.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[test]
    fn concurrent_waiters_share_flushes() {
        let c = Arc::new(Committer::default());
        let flushes = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (c, flushes) = (c.clone(), flushes.clone());
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        let t = c.ticket();
                        let f = |_sync: bool| {
                            flushes.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_micros(200));
                            Ok(())
                        };
                        c.wait(t, Level::Sync, &f).unwrap();
                        assert!(c.synced() >= t);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(flushes.load(Ordering::SeqCst) < 800);
    }

    #[test]
    fn failure_poisons() {
        let c = Committer::default();
        let t = c.ticket();
        let fail = |_: bool| Err("disk on fire".to_string());
        assert!(c.wait(t, Level::Sync, &fail).is_err());
        let t2 = c.ticket();
        let ok = |_: bool| Ok(());
        assert_eq!(c.wait(t2, Level::Flush, &ok).unwrap_err(), "disk on fire");
    }
}
