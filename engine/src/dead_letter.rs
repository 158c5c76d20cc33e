//! Dead letters: events a SIEM refused for good, kept durably with the reason.
//!
//! Each destination has its own dead-letter queue (see [`crate::queue_names`]). A record is
//! one JSON header line (time, destination, reason) followed by the event's queue bytes,
//! untouched, so a replay re-queues exactly what was refused.

use serde::{Deserialize, Serialize};

/// Why and when an event was dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterHeader {
    pub time_ms: u64,
    pub destination: String,
    pub reason: String,
}

/// One dead-lettered event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub header: DeadLetterHeader,
    /// The event as it was queued.
    pub event: Vec<u8>,
}

impl DeadLetter {
    pub fn encode(&self) -> Vec<u8> {
        // serde_json never emits a raw newline, so the first '\n' ends the header.
        let mut bytes = serde_json::to_vec(&self.header).unwrap_or_default();
        bytes.push(b'\n');
        bytes.extend_from_slice(&self.event);
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<DeadLetter, String> {
        let split = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("dead-letter record has no header line")?;
        let header = serde_json::from_slice(&bytes[..split])
            .map_err(|e| format!("dead-letter header is not valid: {e}"))?;
        Ok(DeadLetter {
            header,
            event: bytes[split + 1..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_newlines_in_reason_and_event() {
        let letter = DeadLetter {
            header: DeadLetterHeader {
                time_ms: 1,
                destination: "acme".into(),
                reason: "HTTP 400 code 6:\nInvalid data format".into(),
            },
            event: b"{\"a\":1}\n{\"b\":2}".to_vec(),
        };
        assert_eq!(DeadLetter::decode(&letter.encode()).unwrap(), letter);
        assert!(DeadLetter::decode(b"no header").is_err());
    }

    #[test]
    fn replay_stops_at_a_letter_that_does_not_decode_and_keeps_it() {
        use raxe_storage::{QueueStore, SledStore};
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let letter = |n: u8| DeadLetter {
            header: DeadLetterHeader {
                time_ms: 1,
                destination: "d".into(),
                reason: "HTTP 400".into(),
            },
            event: vec![b'e', n],
        };
        let dlq = store
            .open_queue(&crate::queue_names::dead_letters("d"))
            .unwrap();
        let good = letter(1).encode();
        let later = letter(2).encode();
        dlq.append(&[&good[..], b"no header", &later[..]]).unwrap();
        let err = ops::replay(&store, "d").unwrap_err().to_string();
        assert!(
            err.contains("unreadable dead letter") && err.contains("replayed 0 before it"),
            "{err}"
        );
        // Nothing moved out of that lease, nothing lost: all three are still there.
        assert_eq!(dlq.stats().len, 3);
        let target = store
            .open_queue(&crate::queue_names::destination("d"))
            .unwrap();
        assert_eq!(target.stats().len, 0);
        assert_eq!(ops::purge(&store, "d").unwrap(), 3);
    }
}

/// Operations on a destination's dead letters, straight on the store (the dead-letter
/// queue has no other consumer).
pub mod ops {
    use raxe_storage::QueueStore;

    use super::DeadLetter;
    use crate::error::EngineError;
    use crate::queue_names;

    const CHUNK: usize = 10_000;
    const CHUNK_BYTES: usize = 64 << 20;

    /// Up to `limit` dead letters, oldest first, left in place. Records that do not decode
    /// are reported as an error naming the destination.
    pub fn list(
        store: &dyn QueueStore,
        id: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, EngineError> {
        let dlq = store.open_queue(&queue_names::dead_letters(id))?;
        let Some(lease) = dlq.lease(limit.max(1), usize::MAX)? else {
            return Ok(Vec::new());
        };
        let letters = decode_all(&lease);
        dlq.release(lease);
        letters.map_err(|why| {
            EngineError::UnreadableDeadLetter(format!("dead letters of {id:?}: {why}"))
        })
    }

    /// Moves every dead letter back to the destination's queue (after the SIEM or the
    /// configuration was fixed). Durable in the queue before it leaves the dead letters.
    /// A record that does not decode stops the replay with an error (as in [`list`]) and
    /// stays, with the letters after it; `purge` removes them.
    pub fn replay(store: &dyn QueueStore, id: &str) -> Result<usize, EngineError> {
        let dlq = store.open_queue(&queue_names::dead_letters(id))?;
        let target = queue_names::destination(id);
        let mut moved = 0;
        let mut remaining = dlq.stats().len;
        while remaining > 0 {
            let Some(lease) = dlq.lease(CHUNK, CHUNK_BYTES)? else {
                break;
            };
            remaining = remaining.saturating_sub(lease.len() as u64);
            let letters = match decode_all(&lease) {
                Ok(letters) => letters,
                Err(why) => {
                    dlq.release(lease);
                    return Err(EngineError::UnreadableDeadLetter(format!(
                        "dead letters of {id:?}: {why} (replayed {moved} before it)"
                    )));
                }
            };
            let events: Vec<&[u8]> = letters.iter().map(|l| l.event.as_slice()).collect();
            if let Err(e) = store.append_group(&[(target.as_str(), &events)], None) {
                dlq.release(lease);
                return Err(e.into());
            }
            moved += events.len();
            dlq.ack(lease)?;
        }
        Ok(moved)
    }

    /// Every letter of `lease`, or why one does not decode.
    fn decode_all(lease: &raxe_storage::Lease) -> Result<Vec<DeadLetter>, String> {
        lease
            .records
            .iter()
            .map(|r| DeadLetter::decode(&r.data))
            .collect()
    }

    /// Deletes every dead letter of the destination; returns how many.
    pub fn purge(store: &dyn QueueStore, id: &str) -> Result<usize, EngineError> {
        let dlq = store.open_queue(&queue_names::dead_letters(id))?;
        let mut purged = 0;
        while let Some(lease) = dlq.lease(CHUNK, CHUNK_BYTES)? {
            purged += lease.len();
            dlq.ack(lease)?;
        }
        Ok(purged)
    }
}

/// The marker that records "this queue record is in the dead-letter queue" until the
/// record is acked: a delivery retried after a crash then skips it instead of writing the
/// same dead letter twice. Keyed by destination, seq and a hash of the bytes, so a marker
/// left behind can only ever match the very same record.
pub(crate) fn marker_key(destination: &str, seq: u64, record: &[u8]) -> Vec<u8> {
    format!("dl/{destination}/{seq}/{:016x}", fnv1a64(record)).into_bytes()
}

/// Removes the markers of records just acked. Blocks: call it from the storage pool.
/// Best effort: a marker left behind can only ever match the very same record.
pub(crate) fn remove_markers(store: &dyn raxe_storage::QueueStore, keys: Vec<Vec<u8>>) {
    for key in keys {
        let _ = store.remove_marker(&key);
    }
}

/// FNV-1a, 64 bits: stable across builds (markers outlive a process).
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}
