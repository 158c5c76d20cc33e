//! Byte layout of everything stored in sled. All integers little-endian except key
//! sequence numbers, which are big-endian so sled's byte order is seq order.

use std::ops::Range;

use crate::crc::Crc32;
use crate::queue::Seq;

pub(crate) const CHUNK_PREFIX: u8 = b'c';
pub(crate) const META_PREFIX: u8 = b'm';
/// Key of the queue's persisted ack state.
pub(crate) const ACK_KEY: &[u8] = b"a";

const CHUNK_MAGIC: u8 = 0xC1;
const META_MAGIC: u8 = 0x4D;
const ACK_MAGIC: u8 = 0xA1;

/// Per-record length prefix.
pub(crate) const LEN_PREFIX: usize = 4;
const CHUNK_HEADER: usize = 1 + 4 + 4;

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

/// Encoded size of a chunk holding records with these lengths.
pub(crate) fn chunk_size_of(payload: usize, count: usize) -> usize {
    CHUNK_HEADER + payload + count * LEN_PREFIX
}

/// `magic | count u32 | crc32 u32 | (len u32 | bytes)*`. The crc covers the first seq
/// (so a value under the wrong key is caught), the count and the entries.
pub(crate) fn encode_chunk(first: Seq, records: &[&[u8]]) -> Vec<u8> {
    let payload: usize = records.iter().map(|r| r.len()).sum();
    let mut v = Vec::with_capacity(chunk_size_of(payload, records.len()));
    v.push(CHUNK_MAGIC);
    v.extend_from_slice(&(records.len() as u32).to_le_bytes());
    v.extend_from_slice(&[0u8; 4]);
    for r in records {
        v.extend_from_slice(&(r.len() as u32).to_le_bytes());
        v.extend_from_slice(r);
    }
    let mut c = Crc32::new();
    c.update(&first.to_le_bytes());
    c.update(&v[1..5]);
    c.update(&v[CHUNK_HEADER..]);
    v[5..9].copy_from_slice(&c.finish().to_le_bytes());
    v
}

/// A chunk checked and indexed; record bytes stay in the sled value (no copy).
#[derive(Debug)]
pub(crate) struct DecodedChunk {
    pub(crate) first: Seq,
    value: sled::IVec,
    /// (offset, len) of each record in `value`.
    spans: Vec<(u32, u32)>,
}

impl DecodedChunk {
    pub(crate) fn count(&self) -> u64 {
        self.spans.len() as u64
    }

    /// The record with this seq, if the chunk holds it.
    pub(crate) fn get(&self, seq: Seq) -> Option<&[u8]> {
        let i = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        let &(off, len) = self.spans.get(i)?;
        self.value.get(off as usize..off as usize + len as usize)
    }
}

pub(crate) fn decode_chunk(first: Seq, value: sled::IVec) -> Result<DecodedChunk, String> {
    let v: &[u8] = &value;
    if v.len() < CHUNK_HEADER {
        return Err(format!(
            "chunk value is {} bytes, shorter than its header",
            v.len()
        ));
    }
    if v[0] != CHUNK_MAGIC {
        return Err(format!("unknown chunk format byte {:#04x}", v[0]));
    }
    let count = u32_at(v, 1) as usize;
    let stored_crc = u32_at(v, 5);
    let mut c = Crc32::new();
    c.update(&first.to_le_bytes());
    c.update(&v[1..5]);
    c.update(&v[CHUNK_HEADER..]);
    if c.finish() != stored_crc {
        return Err("checksum mismatch".into());
    }
    let mut spans = Vec::with_capacity(count);
    let mut pos = CHUNK_HEADER;
    for i in 0..count {
        if pos + LEN_PREFIX > v.len() {
            return Err(format!(
                "record {i} of {count}: length prefix past end of chunk"
            ));
        }
        let len = u32_at(v, pos) as usize;
        pos += LEN_PREFIX;
        if pos + len > v.len() {
            return Err(format!(
                "record {i} of {count}: {len} bytes past end of chunk"
            ));
        }
        spans.push((pos as u32, len as u32));
        pos += len;
    }
    if pos != v.len() {
        return Err(format!(
            "{} trailing bytes after {count} records",
            v.len() - pos
        ));
    }
    Ok(DecodedChunk {
        first,
        value,
        spans,
    })
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
    let above = (0..n)
        .map(|i| u64_at(v, 21 + i * 16)..u64_at(v, 29 + i * 16))
        .collect();
    Ok(AckState {
        low: u64_at(v, 1),
        next: u64_at(v, 9),
        above,
    })
}

fn u32_at(v: &[u8], at: usize) -> u32 {
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
mod tests {
    use super::*;

    #[test]
    fn chunk_roundtrip_and_damage() {
        let recs: Vec<&[u8]> = vec![b"a", b"", b"hello"];
        let enc = encode_chunk(7, &recs);
        assert_eq!(enc.len(), chunk_size_of(6, 3));
        let d = decode_chunk(7, enc.clone().into()).unwrap();
        assert_eq!(d.count(), 3);
        assert_eq!(d.get(9), Some(&b"hello"[..]));
        assert_eq!(d.get(10), None);
        assert!(decode_chunk(8, enc.clone().into()).is_err());
        let mut bad = enc.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(decode_chunk(7, bad.into()).is_err());
        assert!(decode_chunk(7, enc[..5].to_vec().into()).is_err());
    }

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
    }
}
