//! Chunk values: many records per sled value, stored plain or LZ4-packed.
//!
//! Plain: `0xC1 | count u32 | crc32 u32 | entries`, where entries are `(len u32 | bytes)*`.
//! Packed: `0xC2 | count u32 | crc32 u32 | entries len u32 | packed len u32 | LZ4 block of
//! the entries`. All integers little-endian.

use std::ops::Range;

use bytes::Bytes;

use super::codec::u32_at;
use crate::crc::Crc32;
use crate::queue::Seq;
use crate::sled_store::MAX_RECORD_BYTES;

pub(crate) const CHUNK_MAGIC: u8 = 0xC1;
pub(crate) const PACKED_MAGIC: u8 = 0xC2;

/// Per-record length prefix.
pub(crate) const LEN_PREFIX: usize = 4;
pub(crate) const CHUNK_HEADER: usize = 1 + 4 + 4;
/// Largest entries section that is packed (bigger chunks stay plain): one record at the
/// record limit. A chunk of many records is far smaller (see `StoreOptions::chunk_bytes`).
const MAX_PACKED_ENTRIES: usize = MAX_RECORD_BYTES + LEN_PREFIX;
/// Packed chunk header: the plain header, then entries length and packed length (u32s).
pub(crate) const PACKED_HEADER: usize = CHUNK_HEADER + 4 + 4;

/// Encoded size of a chunk holding records with these lengths.
pub(crate) fn chunk_size_of(payload: usize, count: usize) -> usize {
    CHUNK_HEADER + payload + count * LEN_PREFIX
}

/// How many bytes of plain records a packed chunk may take, as a multiple of the stored
/// cap: scan events pack ~3x, so 2.5x fills a chunk without its packed form often passing
/// the cap (fewer, bigger chunks: fewer sled items per record; see `StoreOptions::chunk_bytes`).
const PACKED_REACH: (usize, usize) = (5, 2);

/// Cuts `records` into chunks in order and encodes them unsealed: value, record count and
/// payload bytes of each. No value is over `cap` bytes unless it holds a single record
/// bigger than that. With `pack`, a chunk takes up to [`PACKED_REACH`] times `cap` of plain
/// records; one whose packed form is still over `cap` is cut again at what its own ratio
/// allows (each try at least an eighth shorter, and at `cap` a plain chunk fits).
pub(crate) fn cut_chunks(records: &[&[u8]], cap: usize, pack: bool) -> Vec<(Vec<u8>, u32, u64)> {
    let reach = if pack {
        cap * PACKED_REACH.0 / PACKED_REACH.1
    } else {
        cap
    };
    let mut chunks = Vec::new();
    let mut i = 0;
    while i < records.len() {
        let mut limit = reach;
        loop {
            // As many records as fit `limit` in plain form (at least one).
            let mut j = i + 1;
            let mut payload = records[i].len();
            while j < records.len() && chunk_size_of(payload + records[j].len(), j + 1 - i) <= limit
            {
                payload += records[j].len();
                j += 1;
            }
            let value = encode_unsealed(&records[i..j], pack);
            if value.len() <= cap || j == i + 1 || limit <= cap {
                chunks.push((value, (j - i) as u32, payload as u64));
                i = j;
                break;
            }
            let plain = chunk_size_of(payload, j - i);
            limit = (plain / 8 * 7 * cap / value.len()).max(cap);
        }
    }
    chunks
}

/// One chunk value holding `records` (layouts in the module doc). The crc covers the
/// first seq (so a value under the wrong key is caught), the count, and everything after
/// the crc. The packed length is redundant inside sled; it lets a raw scan of the file
/// find the value's end.
///
/// With `pack`, the chunk is packed when LZ4 saves at least an eighth; else it is plain,
/// so incompressible payloads cost no decompression.
#[cfg(test)]
pub(crate) fn encode_chunk(first: Seq, records: &[&[u8]], pack: bool) -> Vec<u8> {
    let mut v = encode_unsealed(records, pack);
    seal(first, &mut v);
    v
}

/// [`encode_chunk`] without the crc, which needs the first seq: an appender encodes its
/// chunks before it takes the queue's lock and [`seal`]s them once seqs are allocated.
pub(crate) fn encode_unsealed(records: &[&[u8]], pack: bool) -> Vec<u8> {
    thread_local! {
        /// The plain form and the LZ4 output, reused: only the value kept is allocated.
        static SCRATCH: std::cell::RefCell<(Vec<u8>, Vec<u8>)> = const {
            std::cell::RefCell::new((Vec::new(), Vec::new()))
        };
    }
    SCRATCH.with(|scratch| {
        let (plain, packed) = &mut *scratch.borrow_mut();
        plain.clear();
        plain.push(CHUNK_MAGIC);
        plain.extend_from_slice(&(records.len() as u32).to_le_bytes());
        plain.extend_from_slice(&[0u8; 4]);
        for r in records {
            plain.extend_from_slice(&(r.len() as u32).to_le_bytes());
            plain.extend_from_slice(r);
        }
        let value = if pack {
            pack_plain(plain, packed)
        } else {
            None
        };
        let value = value.unwrap_or_else(|| plain.clone());
        // Scratch as big as a record at the limit is not worth keeping per thread.
        for buf in [plain, packed] {
            if buf.capacity() > 1 << 20 {
                *buf = Vec::new();
            }
        }
        value
    })
}

/// The packed form of a plain chunk, unsealed, if it saves at least an eighth. `scratch`
/// receives the LZ4 output.
fn pack_plain(plain: &[u8], scratch: &mut Vec<u8>) -> Option<Vec<u8>> {
    let entries = &plain[CHUNK_HEADER..];
    if entries.len() > MAX_PACKED_ENTRIES {
        return None;
    }
    let most = entries.len() - entries.len() / 8;
    let bound = lz4_flex::block::get_maximum_output_size(entries.len());
    if scratch.len() < bound {
        scratch.resize(bound, 0);
    }
    let n = lz4_flex::block::compress_into(entries, &mut scratch[..bound]).ok()?;
    if n > most {
        return None;
    }
    let mut v = Vec::with_capacity(PACKED_HEADER + n);
    v.push(PACKED_MAGIC);
    v.extend_from_slice(&plain[1..5]);
    v.extend_from_slice(&[0u8; 4]);
    v.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    v.extend_from_slice(&(n as u32).to_le_bytes());
    v.extend_from_slice(&scratch[..n]);
    Some(v)
}

/// Sets a chunk value's crc (bytes 5..9).
pub(crate) fn seal(first: Seq, v: &mut [u8]) {
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

/// A chunk checked and indexed. A plain chunk's records stay in the sled value (no copy);
/// a packed chunk's are in the buffer it was unpacked into.
#[derive(Debug)]
pub(crate) struct DecodedChunk {
    pub(crate) first: Seq,
    /// sled's value itself (plain) or the unpacked entries (packed); leased records are
    /// slices of it.
    value: Bytes,
    /// Where each record is in `value`.
    spans: Vec<Range<usize>>,
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
        self.spans.get(i).cloned()
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

/// Where each of `count` length-prefixed entries from `pos` is, which must use the bytes
/// exactly.
fn entry_spans(v: &[u8], pos: usize, count: usize) -> Result<Vec<Range<usize>>, String> {
    let (spans, end) = walk_entries(v, pos, count);
    let i = spans.len();
    if i < count {
        return Err(match v.get(end..end + LEN_PREFIX) {
            None => format!("record {i} of {count}: length prefix past end of chunk"),
            Some(_) => format!(
                "record {i} of {count}: {} bytes past end of chunk",
                u32_at(v, end)
            ),
        });
    }
    if end != v.len() {
        return Err(format!(
            "{} trailing bytes after {count} records",
            v.len() - end
        ));
    }
    Ok(spans)
}

/// Where up to `count` length-prefixed entries of `v` from `pos` are, in order, stopping at
/// the first that does not fit; and where the walk stopped. Lenient: salvage reads damaged
/// chunks with it.
pub(crate) fn walk_entries(v: &[u8], mut pos: usize, count: usize) -> (Vec<Range<usize>>, usize) {
    let mut spans = Vec::with_capacity(count.min(v.len() / LEN_PREFIX));
    while spans.len() < count {
        let Some(prefix) = v.get(pos..pos + LEN_PREFIX) else {
            break;
        };
        let len = u32_at(prefix, 0) as usize;
        let start = pos + LEN_PREFIX;
        if len > v.len() - start {
            break;
        }
        spans.push(start..start + len);
        pos = start + len;
    }
    (spans, pos)
}

#[cfg(test)]
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

    /// Cuts `records` with `cut_chunks`, checks every value against the cap and that the
    /// chunks hold the records in order, and returns the record counts.
    fn cut_and_check(records: &[Vec<u8>], cap: usize, pack: bool) -> Vec<u32> {
        let refs: Vec<&[u8]> = records.iter().map(|r| r.as_slice()).collect();
        let chunks = cut_chunks(&refs, cap, pack);
        let mut next = 0usize;
        for (value, count, payload) in &chunks {
            let count = *count as usize;
            assert!(
                value.len() <= cap || count == 1,
                "{} bytes over {cap}",
                value.len()
            );
            let held = &records[next..next + count];
            assert_eq!(*payload as usize, held.iter().map(Vec::len).sum::<usize>());
            let mut sealed = value.clone();
            seal(next as Seq, &mut sealed);
            let d = decode_chunk(next as Seq, sealed.into()).unwrap();
            for (k, r) in held.iter().enumerate() {
                assert_eq!(d.get((next + k) as Seq).as_deref(), Some(&r[..]));
            }
            next += count;
        }
        assert_eq!(next, records.len());
        chunks.iter().map(|c| c.1).collect()
    }

    #[test]
    fn packed_chunks_hold_more_records_and_stay_under_the_cap() {
        let cap = 20 << 10;
        let scan_like = events(3_000);
        // Plain, a chunk takes what fits the cap in plain form.
        let plain = cut_and_check(&scan_like, cap, false);
        let per_plain = scan_like[0].len() + LEN_PREFIX;
        assert!(plain
            .iter()
            .all(|&n| n as usize * per_plain <= cap + per_plain));
        // Packed, each takes up to 2.5 times that, and its stored value still fits the cap.
        let packed = cut_and_check(&scan_like, cap, true);
        assert!(
            packed.len() * 2 < plain.len(),
            "{} packed chunks against {} plain",
            packed.len(),
            plain.len()
        );
        // Records that do not pack are cut at the cap, as plain ones.
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut noise = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        };
        let random: Vec<Vec<u8>> = (0..600).map(|_| noise(400)).collect();
        assert_eq!(
            cut_and_check(&random, cap, true),
            cut_and_check(&random, cap, false)
        );
        // Records that pack ~2x: the first try at 2.5x is over the cap and is cut again.
        let half: Vec<Vec<u8>> = (0..2_000)
            .map(|_| {
                let mut r = noise(200);
                r.extend_from_slice(&[b'y'; 200]);
                r
            })
            .collect();
        let retried = cut_and_check(&half, cap, true);
        let plain = cut_and_check(&half, cap, false);
        assert!(
            retried.len() < plain.len(),
            "{} against {}",
            retried.len(),
            plain.len()
        );
        // A record bigger than the cap gets a chunk of its own.
        let big = vec![vec![b'a'; 10], noise(30_000), vec![b'b'; 10]];
        assert_eq!(cut_and_check(&big, cap, true), vec![1, 1, 1]);
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
}
