//! Byte layout of everything stored in sled. All integers little-endian except key
//! sequence numbers, which are big-endian so sled's byte order is seq order.

use std::ops::Range;

use bytes::Bytes;

use crate::crc::Crc32;
use crate::queue::Seq;
use crate::sled_store::MAX_RECORD_BYTES;

pub(crate) const CHUNK_PREFIX: u8 = b'c';
pub(crate) const META_PREFIX: u8 = b'm';
/// Key of the queue's persisted ack state.
pub(crate) const ACK_KEY: &[u8] = b"a";
/// Key of the queue's incarnation nonce (ack-journal records name the queue by it).
pub(crate) const NONCE_KEY: &[u8] = b"i";

pub(crate) const CHUNK_MAGIC: u8 = 0xC1;
pub(crate) const PACKED_MAGIC: u8 = 0xC2;
const META_MAGIC: u8 = 0x4D;
const ACK_MAGIC: u8 = 0xA1;
const NONCE_MAGIC: u8 = 0x1D;
const JOURNAL_MAGIC: u8 = 0xAB;

/// Per-record length prefix.
pub(crate) const LEN_PREFIX: usize = 4;
pub(crate) const CHUNK_HEADER: usize = 1 + 4 + 4;
/// Largest entries section that is packed (bigger chunks stay plain): one record at the
/// record limit. A chunk of many records is far smaller (see `StoreOptions::chunk_bytes`).
const MAX_PACKED_ENTRIES: usize = MAX_RECORD_BYTES + LEN_PREFIX;
/// Packed chunk header: the plain header, then entries length and packed length (u32s).
pub(crate) const PACKED_HEADER: usize = CHUNK_HEADER + 4 + 4;

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

/// Plain chunk: `0xC1 | count u32 | crc32 u32 | entries`, where entries are
/// `(len u32 | bytes)*`. Packed chunk: `0xC2 | count u32 | crc32 u32 | entries len u32 |
/// packed len u32 | LZ4 block of the entries`. The crc covers the first seq (so a value
/// under the wrong key is caught), the count, and everything after the crc. The packed
/// length is redundant inside sled; it lets a raw scan of the file find the value's end.
///
/// With `pack`, the chunk is packed when LZ4 saves at least an eighth; else it is plain,
/// so incompressible payloads cost no decompression.
pub(crate) fn encode_chunk(first: Seq, records: &[&[u8]], pack: bool) -> Vec<u8> {
    let payload: usize = records.iter().map(|r| r.len()).sum();
    let mut v = Vec::with_capacity(chunk_size_of(payload, records.len()));
    v.push(CHUNK_MAGIC);
    v.extend_from_slice(&(records.len() as u32).to_le_bytes());
    v.extend_from_slice(&[0u8; 4]);
    for r in records {
        v.extend_from_slice(&(r.len() as u32).to_le_bytes());
        v.extend_from_slice(r);
    }
    if pack {
        if let Some(packed) = pack_plain(first, &v) {
            return packed;
        }
    }
    seal(first, &mut v);
    v
}

/// The packed form of a plain chunk, if it saves at least an eighth.
fn pack_plain(first: Seq, plain: &[u8]) -> Option<Vec<u8>> {
    let entries = &plain[CHUNK_HEADER..];
    if entries.len() > MAX_PACKED_ENTRIES {
        return None;
    }
    let most = entries.len() - entries.len() / 8;
    let bound = lz4_flex::block::get_maximum_output_size(entries.len());
    let mut v = vec![0u8; PACKED_HEADER + bound];
    let n = lz4_flex::block::compress_into(entries, &mut v[PACKED_HEADER..]).ok()?;
    if n > most {
        return None;
    }
    v.truncate(PACKED_HEADER + n);
    v[0] = PACKED_MAGIC;
    v[1..5].copy_from_slice(&plain[1..5]);
    v[9..13].copy_from_slice(&(entries.len() as u32).to_le_bytes());
    v[13..17].copy_from_slice(&(n as u32).to_le_bytes());
    seal(first, &mut v);
    Some(v)
}

/// Sets a chunk value's crc (bytes 5..9).
fn seal(first: Seq, v: &mut [u8]) {
    let crc = chunk_crc(first, v);
    v[5..9].copy_from_slice(&crc.to_le_bytes());
}

/// The crc a chunk value should carry. A packed chunk's covers its magic byte too, so a
/// damaged magic cannot make one form pass for the other (plain chunks predate that).
fn chunk_crc(first: Seq, v: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(&first.to_le_bytes());
    if v[0] == PACKED_MAGIC {
        c.update(&v[..1]);
    }
    c.update(&v[1..5]);
    c.update(&v[CHUNK_HEADER..]);
    c.finish()
}

/// A chunk checked and indexed; record bytes stay in the sled value (no copy).
#[derive(Debug)]
pub(crate) struct DecodedChunk {
    pub(crate) first: Seq,
    /// sled's value itself (no copy); leased records are slices of it.
    value: Bytes,
    /// (offset, len) of each record in `value`.
    spans: Vec<(u32, u32)>,
}

impl DecodedChunk {
    pub(crate) fn count(&self) -> u64 {
        self.spans.len() as u64
    }

    /// The record with this seq, if the chunk holds it: a slice sharing the chunk's memory.
    pub(crate) fn get(&self, seq: Seq) -> Option<Bytes> {
        let span = self.span(seq)?;
        (span.end <= self.value.len()).then(|| self.value.slice(span))
    }

    /// The length of the record with this seq, if the chunk holds it.
    pub(crate) fn len_of(&self, seq: Seq) -> Option<usize> {
        self.span(seq).map(|span| span.len())
    }

    fn span(&self, seq: Seq) -> Option<Range<usize>> {
        let i = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        let &(off, len) = self.spans.get(i)?;
        Some(off as usize..off as usize + len as usize)
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
    if v[0] != CHUNK_MAGIC && v[0] != PACKED_MAGIC {
        return Err(format!("unknown chunk format byte {:#04x}", v[0]));
    }
    let count = u32_at(v, 1) as usize;
    if chunk_crc(first, v) != u32_at(v, 5) {
        return Err("checksum mismatch".into());
    }
    if v[0] == CHUNK_MAGIC {
        let spans = entry_spans(v, CHUNK_HEADER, count)?;
        return Ok(DecodedChunk {
            first,
            value: Bytes::from_owner(value),
            spans,
        });
    }
    let entries = unpack(v)?;
    let spans = entry_spans(&entries, 0, count)?;
    Ok(DecodedChunk {
        first,
        value: Bytes::from(entries),
        spans,
    })
}

/// The entries of a packed chunk value, unchecked by crc: an error unless the header is
/// whole, the packed length matches the value and LZ4 yields exactly the entries length.
/// Allocates the header's entries length, which must lie between the count's length
/// prefixes and min(`MAX_PACKED_ENTRIES`, 255 × the packed length).
pub(crate) fn unpack(v: &[u8]) -> Result<Vec<u8>, String> {
    if v.len() < PACKED_HEADER {
        return Err(format!(
            "packed chunk value is {} bytes, shorter than its header",
            v.len()
        ));
    }
    let count = u32_at(v, 1) as usize;
    let len = u32_at(v, 9) as usize;
    let packed = u32_at(v, 13) as usize;
    if packed != v.len() - PACKED_HEADER {
        return Err(format!(
            "packed chunk says {packed} packed bytes but holds {}",
            v.len() - PACKED_HEADER
        ));
    }
    // Bounds what a damaged header (or a false hit of a raw scan) can make us allocate:
    // LZ4 expands at most 255-fold.
    let most = MAX_PACKED_ENTRIES.min(packed.saturating_mul(255));
    if len < count.saturating_mul(LEN_PREFIX) || len > most {
        return Err(format!(
            "packed chunk claims {len} bytes of entries for {count} records"
        ));
    }
    let mut out = vec![0u8; len];
    match lz4_flex::block::decompress_into(&v[PACKED_HEADER..], &mut out) {
        Ok(n) if n == len => Ok(out),
        Ok(n) => Err(format!("packed chunk unpacked to {n} bytes, not {len}")),
        Err(e) => Err(format!("packed chunk does not unpack: {e}")),
    }
}

/// (offset, len) of each of `count` length-prefixed entries from `pos`, which must use
/// the bytes exactly.
fn entry_spans(v: &[u8], mut pos: usize, count: usize) -> Result<Vec<(u32, u32)>, String> {
    let mut spans = Vec::with_capacity(count);
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
    Ok(spans)
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
/// that is torn, fails its crc, or belongs to another generation. Returns the records and
/// how many bytes they span (the rest is a torn tail or garbage, never applied).
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
        let ranges = (0..n)
            .map(|i| {
                let at = JOURNAL_HEAD + i * 16;
                u64_at(v, at)..u64_at(v, at + 8)
            })
            .collect();
        out.push(JournalAck {
            nonce: u64_at(v, 13),
            ranges,
        });
        pos += len;
    }
    (out, pos)
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
// Lists of one seq range are what these tests mean.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    #[test]
    fn chunk_roundtrip_and_damage() {
        let recs: Vec<&[u8]> = vec![b"a", b"", b"hello"];
        // Too small to pack: plain whatever is asked.
        let enc = encode_chunk(7, &recs, true);
        assert_eq!(enc, encode_chunk(7, &recs, false));
        assert_eq!(enc[0], CHUNK_MAGIC);
        assert_eq!(enc.len(), chunk_size_of(6, 3));
        let d = decode_chunk(7, enc.clone().into()).unwrap();
        assert_eq!(d.count(), 3);
        assert_eq!(d.get(7).as_deref(), Some(&b"a"[..]));
        assert_eq!(d.get(8).as_deref(), Some(&b""[..]));
        assert_eq!(d.get(9).as_deref(), Some(&b"hello"[..]));
        assert_eq!(d.get(10), None);
        assert_eq!(d.get(6), None);
        assert!(decode_chunk(8, enc.clone().into()).is_err());
        let mut bad = enc.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(decode_chunk(7, bad.into()).is_err());
        assert!(decode_chunk(7, enc[..5].to_vec().into()).is_err());
    }

    /// Scan-event-like records: shared keys, a per-record id and hash.
    fn events(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                format!(
                    r#"{{"event_id":"ev-{i}","severity":"high","rule_ids":["pi-{:03}"],"prompt_hash":"sha256:{h:016x}","customer_id":"c{}"}}"#,
                    i % 50,
                    i % 7
                )
                .into_bytes()
            })
            .collect()
    }

    #[test]
    fn packed_chunk_roundtrip_and_damage() {
        let owned = events(40);
        let recs: Vec<&[u8]> = owned.iter().map(|r| r.as_slice()).collect();
        let payload: usize = recs.iter().map(|r| r.len()).sum();
        let enc = encode_chunk(100, &recs, true);
        assert_eq!(enc[0], PACKED_MAGIC);
        let plain = chunk_size_of(payload, recs.len());
        assert!(enc.len() * 2 < plain, "{} of {plain} bytes", enc.len());
        let d = decode_chunk(100, enc.clone().into()).unwrap();
        assert_eq!(d.count(), 40);
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(d.get(100 + i as u64).as_deref(), Some(*r));
            assert_eq!(d.len_of(100 + i as u64), Some(r.len()));
        }
        assert_eq!(d.get(140), None);
        // Under the wrong key, with any byte flipped, or cut: refused, never a panic.
        assert!(decode_chunk(101, enc.clone().into()).is_err());
        for at in 0..enc.len() {
            let mut bad = enc.clone();
            bad[at] ^= 0x04;
            let err = decode_chunk(100, bad.into()).unwrap_err();
            assert!(
                err.contains("checksum") || err.contains("format byte"),
                "flip at {at}: {err}"
            );
        }
        // The magic byte is covered too: packed cannot pass for plain.
        let mut as_plain = enc.clone();
        as_plain[0] = CHUNK_MAGIC;
        assert!(decode_chunk(100, as_plain.into())
            .unwrap_err()
            .contains("checksum"));
        for cut in [1, 9, PACKED_HEADER, enc.len() - 1] {
            assert!(decode_chunk(100, enc[..cut].to_vec().into()).is_err());
        }
    }

    /// A packed header that lies, under a valid crc (as a bug, or a raw scan's false hit,
    /// could present): an error, and no allocation beyond the bound.
    #[test]
    fn packed_chunk_with_a_lying_header_is_refused() {
        let owned = events(20);
        let recs: Vec<&[u8]> = owned.iter().map(|r| r.as_slice()).collect();
        let enc = encode_chunk(0, &recs, true);
        let lie = |at: usize, value: u32| {
            let mut v = enc.clone();
            v[at..at + 4].copy_from_slice(&value.to_le_bytes());
            seal(0, &mut v);
            decode_chunk(0, v.into()).unwrap_err()
        };
        let entries = u32_at(&enc, 9);
        let packed = u32_at(&enc, 13);
        assert!(
            lie(9, entries + 1).contains("unpack"),
            "{}",
            lie(9, entries + 1)
        );
        assert!(
            lie(9, entries - 1).contains("unpack"),
            "{}",
            lie(9, entries - 1)
        );
        assert!(lie(9, u32::MAX).contains("claims"), "{}", lie(9, u32::MAX));
        assert!(lie(13, packed - 1).contains("packed bytes"));
        assert!(lie(1, 21).contains("record"), "{}", lie(1, 21));
        assert!(lie(1, 19).contains("trailing"), "{}", lie(1, 19));
    }

    #[test]
    fn incompressible_chunk_stays_plain() {
        // CRC-32 of a counter: no byte run repeats, so LZ4 saves nothing.
        let noise: Vec<u8> = (0..1000u32)
            .flat_map(|i| crate::crc::crc32(&i.to_le_bytes()).to_le_bytes())
            .collect();
        let recs: Vec<&[u8]> = noise.chunks(400).collect();
        let enc = encode_chunk(3, &recs, true);
        assert_eq!(enc[0], CHUNK_MAGIC);
        assert_eq!(enc.len(), chunk_size_of(4000, 10));
        let d = decode_chunk(3, enc.into()).unwrap();
        assert_eq!(d.get(12).as_deref(), Some(recs[9]));
    }

    proptest::proptest! {
        #[test]
        fn chunk_roundtrips_packed_or_plain(
            recs in proptest::collection::vec(
                proptest::collection::vec(proptest::sample::select(vec![b'a', b'b', b'{', 0u8]), 0..300),
                1..40,
            ),
            pack: bool,
            first in 0u64..1 << 40,
        ) {
            let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
            let d = decode_chunk(first, encode_chunk(first, &refs, pack).into()).unwrap();
            proptest::prop_assert_eq!(d.count(), recs.len() as u64);
            for (i, r) in recs.iter().enumerate() {
                let got = d.get(first + i as u64);
                proptest::prop_assert_eq!(got.as_deref(), Some(r.as_slice()));
            }
        }
    }

    proptest::proptest! {
        /// Arbitrary bytes behind either magic, under a crc that matches (the worst case):
        /// an error or a chunk, never a panic.
        #[test]
        fn arbitrary_chunk_bytes_never_panic(
            packed: bool,
            count in 0u32..64,
            entries_len in 0u32..4096,
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
        ) {
            let mut v = vec![if packed { PACKED_MAGIC } else { CHUNK_MAGIC }];
            v.extend_from_slice(&count.to_le_bytes());
            v.extend_from_slice(&[0; 4]);
            if packed {
                v.extend_from_slice(&entries_len.to_le_bytes());
                v.extend_from_slice(&(tail.len() as u32).to_le_bytes());
            }
            v.extend_from_slice(&tail);
            seal(9, &mut v);
            let _ = decode_chunk(9, v.into());
        }
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
}
