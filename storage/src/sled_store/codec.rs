//! Byte layout of everything stored in sled but chunk values (`chunk.rs`): keys, chunk
//! metadata, ack state, nonce, and the ack journal's records. All integers little-endian
//! except key sequence numbers, which are big-endian so sled's byte order is seq order.

use std::ops::Range;

use super::sled_queue::MAX_RECORD_BYTES;
use crate::crc::Crc32;
use crate::queue::Seq;

pub(crate) const CHUNK_PREFIX: u8 = b'c';
pub(crate) const META_PREFIX: u8 = b'm';
/// Key of the queue's persisted ack state.
pub(crate) const ACK_KEY: &[u8] = b"a";
/// Key of the queue's incarnation nonce (ack-journal records name the queue by it).
pub(crate) const NONCE_KEY: &[u8] = b"i";

const META_MAGIC: u8 = 0x4D;
const ACK_MAGIC: u8 = 0xA1;
const NONCE_MAGIC: u8 = 0x1D;
const JOURNAL_MAGIC: u8 = 0xAB;

pub(crate) fn chunk_key(first: Seq) -> [u8; 9] {
    prefixed(CHUNK_PREFIX, first)
}

pub(crate) fn meta_key(first: Seq) -> [u8; 9] {
    prefixed(META_PREFIX, first)
}

fn prefixed(p: u8, seq: Seq) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = p;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Parses a chunk or meta key back into its first seq.
pub(crate) fn key_seq(key: &[u8]) -> Option<Seq> {
    if key.len() != 9 {
        return None;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[1..]);
    Some(Seq::from_be_bytes(b))
}

/// What reopen needs about a chunk without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkMeta {
    pub(crate) count: u32,
    /// Payload bytes (sum of record lengths).
    pub(crate) bytes: u64,
    /// Append time, milliseconds since the Unix epoch.
    pub(crate) append_ms: u64,
}

impl ChunkMeta {
    pub(crate) fn end(&self, first: Seq) -> Seq {
        first + self.count as u64
    }
}

/// No seq reaches this (4.6e18 records): a seq or range end above it read from disk is
/// damage or a crafted file, refused before any arithmetic on it can wrap.
pub(crate) const MAX_SEQ: Seq = 1 << 62;

fn seq_range_ok(r: &Range<Seq>) -> bool {
    r.start <= r.end && r.end <= MAX_SEQ
}

const META_LEN: usize = 1 + 4 + 8 + 8 + 4;

pub(crate) fn encode_meta(first: Seq, m: &ChunkMeta) -> [u8; META_LEN] {
    let mut v = [0u8; META_LEN];
    v[0] = META_MAGIC;
    v[1..5].copy_from_slice(&m.count.to_le_bytes());
    v[5..13].copy_from_slice(&m.bytes.to_le_bytes());
    v[13..21].copy_from_slice(&m.append_ms.to_le_bytes());
    let mut c = Crc32::new();
    c.update(&first.to_le_bytes());
    c.update(&v[..21]);
    v[21..25].copy_from_slice(&c.finish().to_le_bytes());
    v
}

pub(crate) fn decode_meta(first: Seq, v: &[u8]) -> Result<ChunkMeta, String> {
    if v.len() != META_LEN || v[0] != META_MAGIC {
        return Err(format!(
            "chunk metadata of {} bytes has an unknown format",
            v.len()
        ));
    }
    let mut c = Crc32::new();
    c.update(&first.to_le_bytes());
    c.update(&v[..21]);
    if c.finish() != u32_at(v, 21) {
        return Err("chunk metadata checksum mismatch".into());
    }
    let m = ChunkMeta {
        count: u32_at(v, 1),
        bytes: u64_at(v, 5),
        append_ms: u64_at(v, 13),
    };
    if m.count == 0 {
        return Err("chunk metadata with zero records".into());
    }
    if first
        .checked_add(u64::from(m.count))
        .is_none_or(|end| end > MAX_SEQ)
    {
        return Err("chunk metadata past the seq space".into());
    }
    if m.bytes > u64::from(m.count) * MAX_RECORD_BYTES as u64 {
        return Err("chunk metadata counts more bytes than its records can hold".into());
    }
    Ok(m)
}

/// Persisted ack state: every seq below `low` is acked (or never existed); `above` lists
/// acked ranges past it (out-of-order acks); `next` is a floor for the next seq, so seqs
/// never repeat even after the newest chunks were acked and deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AckState {
    pub(crate) low: Seq,
    pub(crate) next: Seq,
    pub(crate) above: Vec<Range<Seq>>,
}

pub(crate) fn encode_ack(a: &AckState) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + 8 + 8 + 4 + a.above.len() * 16 + 4);
    v.push(ACK_MAGIC);
    v.extend_from_slice(&a.low.to_le_bytes());
    v.extend_from_slice(&a.next.to_le_bytes());
    v.extend_from_slice(&(a.above.len() as u32).to_le_bytes());
    for r in &a.above {
        v.extend_from_slice(&r.start.to_le_bytes());
        v.extend_from_slice(&r.end.to_le_bytes());
    }
    let mut c = Crc32::new();
    c.update(&v);
    v.extend_from_slice(&c.finish().to_le_bytes());
    v
}

pub(crate) fn decode_ack(v: &[u8]) -> Result<AckState, String> {
    if v.len() < 1 + 8 + 8 + 4 + 4 || v[0] != ACK_MAGIC {
        return Err(format!(
            "ack state of {} bytes has an unknown format",
            v.len()
        ));
    }
    let body = &v[..v.len() - 4];
    let mut c = Crc32::new();
    c.update(body);
    if c.finish() != u32_at(v, v.len() - 4) {
        return Err("ack state checksum mismatch".into());
    }
    let n = u32_at(v, 17) as usize;
    if body.len() != 21 + n * 16 {
        return Err("ack state length does not match its range count".into());
    }
    let above: Vec<Range<Seq>> = (0..n)
        .map(|i| u64_at(v, 21 + i * 16)..u64_at(v, 29 + i * 16))
        .collect();
    let (low, next) = (u64_at(v, 1), u64_at(v, 9));
    if low > MAX_SEQ || next > MAX_SEQ || !above.iter().all(seq_range_ok) {
        return Err("ack state past the seq space".into());
    }
    Ok(AckState { low, next, above })
}

/// Merges acked `ranges` into a persisted ack state (idempotent). Returns whether it changed.
pub(crate) fn merge_acks(a: &mut AckState, ranges: &[Range<Seq>]) -> bool {
    use super::ranges::RangeSet;
    let mut set = RangeSet::new();
    for r in &a.above {
        set.insert(r.clone());
    }
    let mut next = a.next;
    for r in ranges {
        set.insert(r.clone());
        next = next.max(r.end);
    }
    let mut low = a.low;
    while let Some(r) = set.first() {
        if r.start > low {
            break;
        }
        low = low.max(r.end);
        set.remove(r);
    }
    set.remove_below(low);
    let merged = AckState {
        low,
        next,
        above: set.iter().collect(),
    };
    let changed = merged != *a;
    *a = merged;
    changed
}

const NONCE_LEN: usize = 1 + 8 + 4;

/// `magic | nonce u64 | crc32`.
pub(crate) fn encode_nonce(nonce: u64) -> [u8; NONCE_LEN] {
    let mut v = [0u8; NONCE_LEN];
    v[0] = NONCE_MAGIC;
    v[1..9].copy_from_slice(&nonce.to_le_bytes());
    let mut c = Crc32::new();
    c.update(&v[..9]);
    v[9..].copy_from_slice(&c.finish().to_le_bytes());
    v
}

pub(crate) fn decode_nonce(v: &[u8]) -> Result<u64, String> {
    if v.len() != NONCE_LEN || v[0] != NONCE_MAGIC {
        return Err(format!(
            "queue nonce of {} bytes has an unknown format",
            v.len()
        ));
    }
    let mut c = Crc32::new();
    c.update(&v[..9]);
    if c.finish() != u32_at(v, 9) {
        return Err("queue nonce checksum mismatch".into());
    }
    Ok(u64_at(v, 1))
}

/// Fixed part of an ack-journal record: magic, range count u32, generation u64, nonce u64.
const JOURNAL_HEAD: usize = 1 + 4 + 8 + 8;

/// Appends one ack-journal record to `buf`:
/// `magic | n u32 | generation u64 | queue nonce u64 | (start u64 | end u64)*n | crc32`,
/// the crc covering everything before it. The generation (the journal file's) makes a
/// record from another file, or stale bytes, fail the check.
pub(crate) fn encode_journal_ack(buf: &mut Vec<u8>, gen: u64, nonce: u64, ranges: &[Range<Seq>]) {
    let at = buf.len();
    buf.push(JOURNAL_MAGIC);
    buf.extend_from_slice(&(ranges.len() as u32).to_le_bytes());
    buf.extend_from_slice(&gen.to_le_bytes());
    buf.extend_from_slice(&nonce.to_le_bytes());
    for r in ranges {
        buf.extend_from_slice(&r.start.to_le_bytes());
        buf.extend_from_slice(&r.end.to_le_bytes());
    }
    let mut c = Crc32::new();
    c.update(&buf[at..]);
    buf.extend_from_slice(&c.finish().to_le_bytes());
}

/// One decoded ack-journal record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JournalAck {
    pub(crate) nonce: u64,
    pub(crate) ranges: Vec<Range<Seq>>,
}

/// Decodes the records of a journal file of generation `gen`, stopping at the first one
/// that is torn, fails its crc, belongs to another generation or acks seqs past the seq
/// space. Returns the records and how many bytes they span (the rest is a torn tail or
/// garbage, never applied).
pub(crate) fn decode_journal(data: &[u8], gen: u64) -> (Vec<JournalAck>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while data.len() - pos >= JOURNAL_HEAD + 4 {
        let v = &data[pos..];
        if v[0] != JOURNAL_MAGIC {
            break;
        }
        let n = u32_at(v, 1) as usize;
        let Some(len) = n
            .checked_mul(16)
            .and_then(|b| b.checked_add(JOURNAL_HEAD + 4))
        else {
            break;
        };
        if len > v.len() {
            break;
        }
        let mut c = Crc32::new();
        c.update(&v[..len - 4]);
        if c.finish() != u32_at(v, len - 4) || u64_at(v, 5) != gen {
            break;
        }
        let ranges: Vec<Range<Seq>> = (0..n)
            .map(|i| {
                let at = JOURNAL_HEAD + i * 16;
                u64_at(v, at)..u64_at(v, at + 8)
            })
            .collect();
        if !ranges.iter().all(seq_range_ok) {
            // Not ours: nothing from here on is applied (a replay only ever acks less).
            break;
        }
        out.push(JournalAck {
            nonce: u64_at(v, 13),
            ranges,
        });
        pos += len;
    }
    (out, pos)
}

pub(crate) fn u32_at(v: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&v[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(v: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&v[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
// Lists of one seq range are what these tests mean.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    #[test]
    fn meta_and_ack_roundtrip() {
        let m = ChunkMeta {
            count: 3,
            bytes: 99,
            append_ms: 12345,
        };
        assert_eq!(decode_meta(4, &encode_meta(4, &m)).unwrap(), m);
        assert!(decode_meta(5, &encode_meta(4, &m)).is_err());
        let a = AckState {
            low: 3,
            next: 50,
            above: vec![5..9, 20..21],
        };
        assert_eq!(decode_ack(&encode_ack(&a)).unwrap(), a);
        let mut bad = encode_ack(&a);
        bad[2] ^= 1;
        assert!(decode_ack(&bad).is_err());
        assert_eq!(decode_nonce(&encode_nonce(77)).unwrap(), 77);
        let mut bad = encode_nonce(77);
        bad[3] ^= 1;
        assert!(decode_nonce(&bad).is_err());
    }

    #[test]
    fn merge_acks_is_idempotent_and_folds_into_low() {
        let mut a = AckState {
            low: 3,
            next: 50,
            above: vec![5..9, 20..21],
        };
        assert!(merge_acks(&mut a, &[3..5, 60..61]));
        assert_eq!(
            a,
            AckState {
                low: 9,
                next: 61,
                above: vec![20..21, 60..61],
            }
        );
        let before = a.clone();
        assert!(!merge_acks(&mut a, &[0..9, 20..21]));
        assert_eq!(a, before);
    }

    #[test]
    fn journal_roundtrip_torn_tail_and_generation() {
        let mut buf = Vec::new();
        encode_journal_ack(&mut buf, 7, 11, &[1..5, 9..10]);
        let one = buf.len();
        encode_journal_ack(&mut buf, 7, 12, &[]);
        encode_journal_ack(&mut buf, 7, 13, &[100..200]);
        let (recs, used) = decode_journal(&buf, 7);
        assert_eq!(used, buf.len());
        assert_eq!(
            recs,
            vec![
                JournalAck {
                    nonce: 11,
                    ranges: vec![1..5, 9..10]
                },
                JournalAck {
                    nonce: 12,
                    ranges: vec![]
                },
                JournalAck {
                    nonce: 13,
                    ranges: vec![100..200]
                },
            ]
        );
        // Another generation's records are not ours.
        assert_eq!(decode_journal(&buf, 8), (vec![], 0));
        // Every torn tail stops cleanly after the last whole record.
        for cut in 0..buf.len() {
            let (recs, used) = decode_journal(&buf[..cut], 7);
            assert!(used <= cut);
            assert_eq!(recs.len(), if cut < one { 0 } else { recs.len() });
        }
        // A flipped bit stops replay at that record; zeros are never a record.
        let mut bad = buf.clone();
        bad[one + 3] ^= 1;
        assert_eq!(decode_journal(&bad, 7).0.len(), 1);
        assert_eq!(decode_journal(&[0u8; 100], 0), (vec![], 0));
    }

    /// Crafted values with valid checksums: seqs near the top of the range would wrap the
    /// arithmetic on them (a chunk's end, the next seq), so they are refused as damage.
    #[test]
    fn seqs_past_the_seq_space_are_refused() {
        let m = |count, bytes| ChunkMeta {
            count,
            bytes,
            append_ms: 1,
        };
        let near_top = u64::MAX - 3;
        assert!(decode_meta(near_top, &encode_meta(near_top, &m(10, 10))).is_err());
        assert!(decode_meta(MAX_SEQ - 10, &encode_meta(MAX_SEQ - 10, &m(10, 10))).is_ok());
        assert!(decode_meta(MAX_SEQ - 9, &encode_meta(MAX_SEQ - 9, &m(10, 10))).is_err());
        let too_many_bytes = 2 * MAX_RECORD_BYTES as u64 + 1;
        assert!(decode_meta(0, &encode_meta(0, &m(2, too_many_bytes))).is_err());

        let ack = |low, next, above: Vec<Range<Seq>>| AckState { low, next, above };
        assert!(decode_ack(&encode_ack(&ack(5, MAX_SEQ, vec![7..9]))).is_ok());
        assert!(decode_ack(&encode_ack(&ack(5, u64::MAX, vec![]))).is_err());
        assert!(decode_ack(&encode_ack(&ack(u64::MAX, 5, vec![]))).is_err());
        let reversed = Range { start: 9, end: 7 };
        assert!(decode_ack(&encode_ack(&ack(5, 10, vec![reversed]))).is_err());
        assert!(decode_ack(&encode_ack(&ack(5, 10, vec![7..u64::MAX]))).is_err());

        let mut buf = Vec::new();
        encode_journal_ack(&mut buf, 3, 1, &[1..5]);
        let good = buf.len();
        encode_journal_ack(&mut buf, 3, 1, &[7..u64::MAX]);
        encode_journal_ack(&mut buf, 3, 1, &[9..10]);
        let (recs, used) = decode_journal(&buf, 3);
        assert_eq!(recs.len(), 1);
        assert_eq!(used, good);
    }
}
