//! raxe-storage: durable on-disk write-ahead queues for the delivery engine.
//!
//! # Job
//! Keep every scan event the engine accepted until a destination acked it. The crate
//! knows bytes, sequence numbers, leases and acks; nothing about SIEMs. The engine
//! programs against [`Queue`] / [`QueueStore`]; [`SledStore`] implements them on sled
//! 0.34.
//!
//! # Invariants
//! * An `append` that returned `Ok` survives a process crash and a power loss.
//! * Seqs in a queue strictly increase and are never reused, across restarts too.
//! * Records are delivered (leased) in seq order; a released lease goes back to the head.
//! * A crash can cause duplicates (records leased or acked-but-not-yet-flushed come back),
//!   never loss and never reordering. After kill -9 only records of leases in flight come
//!   back (an `ack` returns once it is in the ack journal, i.e. in the page cache); after a
//!   power loss also acks since the last fdatasync.
//! * Nothing is dropped silently: past its byte cap an append fails as a whole with
//!   [`QueueError::Full`]; a damaged chunk fails the lease with [`QueueError::Damaged`].
//!
//! # On-disk layout
//! A data directory holds `raxe.lock` (flock: one process per directory), the ack journal
//! `acks-<generation, 16 hex digits>.log` (usually one file; see below), rarely
//! `orphan-<queue nonce>-<seq>.chunk` files (see "What `append` promises"), and sled's files:
//! `conf`, `db` (the log-structured data file), `blobs/` (log items above a quarter of
//! sled's segment; chunks are sized so that even a whole leaf of them stays inline, with a
//! 2 MiB segment), `snap.*`. In sled:
//! * default tree: `raxe-storage/format` → layout version (a foreign or empty-but-nonzero
//!   `db` is refused rather than overwritten);
//! * tree `raxe/markers`: marker key → value, set atomically with a group append;
//! * one tree per queue, `q/<name>`, holding
//!   - `c ‖ first_seq(u64 BE)` → chunk, many records per value (per-record keys cost ~3x
//!     throughput and ~2x disk). Plain: `0xC1 ‖ count u32 ‖ crc32 ‖ entries`, entries
//!     being `(len u32 ‖ bytes)*`. Packed (layout v2, the default whenever it saves an
//!     eighth): `0xC2 ‖ count u32 ‖ crc32 ‖ entries len u32 ‖ packed len u32 ‖ LZ4 block
//!     of the entries`. The crc covers the first seq too, so a value under the wrong key
//!     is caught, and is checked before anything is unpacked;
//!   - `m ‖ first_seq` → chunk metadata: count, payload bytes, append time, crc32. Reopen
//!     scans only this prefix, never the payloads;
//!   - `a` → ack state: `low` (every seq below is acked), `next` (floor for the next seq,
//!     so seqs never repeat after the newest chunks were acked away), and the acked ranges
//!     above `low` (out-of-order acks), crc32;
//!   - `i` → the queue's nonce: `0x1D ‖ u64 ‖ crc32`, random, written (and flushed) when
//!     the queue is first opened. Ack-journal records name their queue by it, so records
//!     of a dropped queue never touch a new queue of the same name (whose seqs restart).
//!
//! Ack journal record (all little-endian): `0xAB ‖ range count u32 ‖ generation u64 ‖
//! queue nonce u64 ‖ (start u64 ‖ end u64)* ‖ crc32` over everything before it. The
//! generation is the file's own, so bytes from another file never validate.
//!
//! Big-endian seqs make sled's key order the seq order. A chunk and its metadata are
//! written in one `apply_batch`, so they exist together or not at all.
//!
//! # What `append` promises
//! It returns once the records are on disk: inserted into sled, sled's log flushed, and
//! then sled's `db` file fdatasynced by us. (sled's `flush()` only calls sync_file_range —
//! no disk-cache flush, no metadata — and leaves the real fsync to a background thread.)
//! Concurrent appenders share one flush: group commit (see `commit.rs`): a writer takes a
//! ticket after its sled write, and a single leader flushes + syncs for every ticket issued
//! before its flush started while the rest wait on a condvar. Records become leasable only
//! after their sync, in seq order. A failed fdatasync poisons the store (the kernel may
//! have dropped the dirty pages; retrying could report data durable that is not): every
//! later append fails until the store is reopened. All syncs go through the [`Syncer`]
//! hook, which tests use to observe ordering and inject faults. Should sled ever write a
//! blob file (a record bigger than a chunk), it is fdatasynced (and its directory) too.
//!
//! [`SledStore::append_group`] appends to several queues and sets a marker in one sled
//! transaction (sled logs a multi-tree transaction as one atomic batch) and one group
//! commit: after a crash either all of it is there or none of it, which lets the CLI
//! record "this spool file was ingested" in the same durable step as its events.
//!
//! Locks: an append cuts and encodes (packs) its chunks before it takes any lock. A
//! queue's append lock then orders appends from seq allocation to their sled write; its
//! state lock, which leases and acks take, is held only to allocate the seqs and to queue
//! the written chunks for publication, not during the sled write (sled's own lock for a
//! batch still serialises it against every other sled call). While a range is staged
//! (seqs taken, sled write not yet done) acks treat it as not there: their low-water mark
//! stops below it and the `next` they persist does not include it. Should sled panic
//! inside the write (sled 0.34 does on some damaged trees), the append fails with
//! `Corrupt`, its seqs go back and the store is poisoned; appends check the poison again
//! once they hold the append lock, so none writes those seqs over a batch sled may have
//! half applied. sled does not undo that half: after a restart its records may be
//! delivered although their append failed (a duplicate, never a loss). A payload written
//! without its metadata lies past the queue's last chunk and its durable tip (`tips`): it
//! is never read, and the next open moves it out of sled into a file beside it,
//! `orphan-<queue nonce>-<seq>.chunk` (kept, not deleted, in case damage made an accepted
//! chunk look like that), with a warning.
//!
//! # Leases and acks
//! Leases live in memory only; after a restart everything not acked is leased again.
//!
//! What `ack` promises: on return, the acked records do not come back after a process
//! crash (kill -9); after a power loss they may (a duplicate, never a loss). It does not
//! wait for any flush. Under the queue lock it updates the in-memory index and computes
//! the new ack state; then, under the journal's lock only (the queue lock is free for
//! leases and appends meanwhile), it
//! 1. appends one record (queue nonce + acked seq ranges + crc) to the ack journal with a
//!    single `write()`, no fsync: the page cache survives a process crash;
//! 2. writes the new ack state, then removes every chunk that became fully acked (payload,
//!    then metadata), as plain sled writes in memory. Not a sled batch: sled writes out its
//!    log buffer (pwrite + a waiting sync_file_range) around every batch, which cost more
//!    than the rest of the ack. That order keeps every prefix sled may recover safe: a
//!    chunk is never gone while the persisted state calls it unacked, and metadata whose
//!    payload is gone is fully acked and removed at load. Two acks of a queue can reach
//!    the journal's lock in either order: each state carries a version, and an older one
//!    is not written over a newer one (which covers it). A dropped queue stops these
//!    writes and passes through the journal's lock before its tree goes.
//!
//! [`Queue::ack_notifying`] signals between the two steps: once the journal has the record
//! the ack survives kill -9, and a caller that needs only that (the engine, before it sends
//! its next batch) need not wait for the sled writes. [`Queue::ack_without_waiting`] does
//! both steps and hands back only what waits for a flush: a journal rotation (below), or
//! the flush itself when the journal is broken. An async caller runs the rest on a thread
//! that may block; the ack is durable once the journal has it, or once that rest ran.
//!
//! sled persists those writes with its next flush (any append's group commit, its
//! background flusher, a journal rotation). Opening a store replays every journal file
//! into the ack state of the queue with the matching nonce (acking is idempotent; a torn
//! or crc-failing tail record is ignored), fdatasyncs, and deletes the replayed files.
//! Rotation bounds the journal: past `StoreOptions::ack_journal_bytes` (1 MiB, ~20k acks)
//! the ack that crosses it switches to a new generation file, waits for a sled flush that
//! started after the switch, then deletes the old file. Journal writes and their sled
//! writes happen under one lock that the switch also takes, so that flush covers every
//! record of the old file. Should a journal write fail, acks fall back to waiting for
//! sled's flush until the store is reopened.
//!
//! The in-memory index is a map of chunk metadata plus range sets (available, acked): it
//! grows with the chunk count (~50 bytes per chunk), not with the payload. The last decoded
//! chunk is cached so consecutive leases read it once; leased records are slices of it, so
//! a record held keeps its whole chunk (up to 50 KiB of records by default) in memory.
//!
//! # Disk size
//! sled reuses space freed by acks and truncates its file only by free segments at its
//! tail: `disk_bytes` mostly keeps its high-water mark when queues drain. With scan events, expect ~0.6x the payload while records
//! are queued: chunks pack ~3x and sled's log structure and node rewrites add ~2x back
//! (`queue_bench`, 1M queued: 255 bytes per 420-byte record). 8 KiB chunks stored plain
//! took ~1.7x (707 bytes).
//!
//! # Memory
//! sled keeps the leaves it touched in memory until its LRU pages them out. The LRU is
//! sharded by page id and a shard never evicts the page it just admitted; upstream's 256
//! shards of the 8 MiB cache (32 KiB each) were smaller than one leaf of chunks (8-17
//! chunks, 100-300 KiB), so every shard kept one and up to ~256 leaves stayed resident
//! whatever `cache_capacity` said. The vendored sled has 16 shards (`vendor/README.md`),
//! and the capacity holds: a queue growing by 300,000 scan-like records adds ~5 MiB of
//! RSS, against ~32 MiB with 256 shards (`tests/sled_cache_bound.rs`). Above the cache, memory
//! grows with the queue only through the chunk index here and sled's page table: ~6 MiB
//! per million records.
//!
//! Each busy queue needs a leaf or two in the cache (the one its appends go to, the one
//! its leases and acks work on). When the queues in use need more than the capacity, a
//! round over them pages every leaf out and reads it back: 100 destinations on the 8 MiB
//! cache spent ~10% of their CPU re-reading and decoding leaves. The service sizes the
//! cache for the destinations configured ([`StoreOptions::cache_for_queues`]: 8 MiB plus
//! 160 KiB each, at most 48 MiB); idle queues' leaves are never loaded, so an idle
//! destination costs nothing (`tests/sled_cache_queues.rs`).

mod crc;
pub mod error;
pub mod queue;
mod sled_store;

pub use error::QueueError;
pub use queue::{AckProgress, Lease, PendingAck, Queue, QueueStats, QueueStore, Record, Seq};
pub use sled_store::{
    find_log_damage, scan_raw_chunks, scan_raw_records, ClosedSignal, DamagedChunk, FsSyncer,
    LogDamage, Quarantined, SledQueue, SledStore, StoreOptions, Syncer, LOCK_FILE,
    MAX_RECORD_BYTES,
};
