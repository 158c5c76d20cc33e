//! The one error type of this crate. Every variant names what it is about (queue, file,
//! directory) so an operator can act on the message alone.

use std::io;
use std::path::PathBuf;

use crate::queue::Seq;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// Appending would take the queue past its byte cap; nothing was appended.
    #[error(
        "queue {queue:?} is full: {queued} bytes queued + {incoming} bytes incoming would \
         exceed its cap of {cap} bytes (nothing was appended)"
    )]
    Full {
        queue: String,
        cap: u64,
        queued: u64,
        incoming: u64,
    },

    /// Another process (or another open in this process) holds the data directory.
    #[error("data directory {} is in use by another raxe process (lock file {})", dir.display(), lock.display())]
    InUse { dir: PathBuf, lock: PathBuf },

    /// The data directory cannot be created, locked or written.
    #[error("data directory {} cannot be used: {source}", dir.display())]
    Directory {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A file in the data directory is damaged or was not written by raxe-storage.
    #[error("{}: damaged or foreign database: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },

    /// A stored chunk of records failed its checksum or could not be decoded.
    #[error("queue {queue:?}: stored records at seq {seq} are damaged: {detail}")]
    Damaged {
        queue: String,
        seq: Seq,
        detail: String,
    },

    /// An I/O error on a named file.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// sled reported an error (I/O, corruption, bug) while the database was in use.
    #[error("database {}: {detail}", path.display())]
    Db { path: PathBuf, detail: String },

    /// An earlier fdatasync failed. The kernel may have dropped the dirty pages, so no
    /// later append can be promised durable: the store must be reopened.
    #[error("data directory {}: an earlier disk sync failed ({detail}); reopen the store", dir.display())]
    Poisoned { dir: PathBuf, detail: String },

    #[error("invalid queue name {name:?}: {why}")]
    InvalidName { name: String, why: &'static str },

    #[error("queue {queue:?}: record of {len} bytes is larger than the {max} bytes limit")]
    RecordTooLarge {
        queue: String,
        len: usize,
        max: usize,
    },

    /// The lease was already acked or released, or belongs to another queue.
    #[error("queue {queue:?}: lease {id} is not outstanding")]
    UnknownLease { queue: String, id: u64 },

    /// The queue was dropped from the store while this handle was still alive.
    #[error("queue {queue:?} was dropped")]
    Dropped { queue: String },
}
