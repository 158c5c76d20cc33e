//! Pre-open scan of sled's log for a damaged message that sled would treat as the end of
//! its log, destroying the intact messages after it while it opens.
//!
//! # sled 0.34's log (`pagecache/logger.rs`, `iterator.rs`, `snapshot.rs`)
//! The data file is a run of segments (`segment_size` bytes each). A segment starts with a
//! 20-byte header: `crc32(bytes 4..20) ^ !0` (u32 LE), `lsn ^ i64::MAX` (i64 LE),
//! `max_stable_lsn ^ i64::MAX`. A segment's lsn is a multiple of the segment size; a reused
//! segment gets a new, higher one. Messages follow back to back from byte 20:
//! `crc32 (u32 LE) ‖ kind u8 ‖ len ‖ segment_number ‖ pid` (the last three are sled's
//! varints), then `len` bytes. The stored crc is `crc32(body ‖ header[4..]) ^ !0`, and
//! `segment_number` is `segment lsn / segment_size`: a message left over from an earlier
//! use of the segment passes its crc but carries an older number, which sled rejects like
//! a bad crc. Kind 0 (the fill sled writes over dead space) and unknown kinds are rejected
//! too, as is a length past the segment's end. A `Cap` message pads a full segment; no
//! message starts within the last 32 bytes of a segment.
//!
//! # What recovery does with a rejected message
//! sled replays the segments whose lsn is at least the segment of the stable lsn of its
//! newest `snap.*` file (written at every open; sled 0.34 writes no other snapshot). It
//! first walks the newest segments in lsn order and stops at the first rejected message:
//! that is the end of the log. It then zero-fills ("shreds") the rest of that segment and
//! overwrites every segment with a higher lsn, and fsyncs: whatever intact messages came
//! after the rejected one are gone before any of our checks runs. (In older segments a
//! rejected message only makes it skip the rest of that segment.)
//!
//! # The rule
//! Walk the same segments in the same order, message by message, checking each as sled
//! does, up to the first message sled rejects (P). What P is decides:
//! * zeros where its crc and kind should be: space sled has not written yet, or a slot
//!   reserved for a batch manifest that a crash left unfilled (`kill -9` leaves these, with
//!   valid messages after them): the end of the log, no damage;
//! * a header naming another segment number, a length past the segment or a body past the
//!   end of the file: stale bytes of an earlier use of the segment (the usual end of a
//!   log in a reused segment), or a torn tail. No damage, unless changing one byte of its
//!   header (kind, length, segment number, page id) turns it into a message sled accepts:
//!   a flip in the header;
//! * a header naming this segment with a length that fits and its body in the file, but a
//!   failing crc or unknown kind: damage if one flipped bit explains the crc (CRC-32 is
//!   affine, so the difference pins the bit; see [`single_bit_error`]), or a flipped bit
//!   in its length or page id does, or a message sled accepts follows it (later in the
//!   segment, or in a segment with a higher lsn). Otherwise it is a write cut short by
//!   the crash: a `kill -9` can stop a `pwrite` between pages, leaving a message whose
//!   start is new and whose end is stale.
//!
//! So a single flipped bit anywhere in a replayed message is found (a changed byte too,
//! when in the header, or when anything valid follows); a crash is not taken for damage,
//! except by chance (about `8n / 2^32` for a cut message of `n` bytes), or should a later
//! buffer reach the disk before an earlier one that the crash then cut: either only costs
//! a copy of the file, deleted once every queue loads with all its records (see
//! `SledStore::open_with`). Not seen: a segment older than sled's snapshot (sled does not
//! replay it at open; reading a record from it later fails its check loudly instead).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::crc::{crc32, Crc32};
use crate::error::QueueError;

/// sled's segment header: crc32 (xor !0) of the next 16 bytes, then two xor-masked LSNs
/// (sled 0.34, `pagecache/logger.rs`).
const SEG_HEADER_LEN: usize = 20;
/// sled starts no message within this many bytes of a segment's end.
const MAX_MSG_HEADER_LEN: usize = 32;
/// sled reads this much to parse a message header (zero-filled past the file's end).
const HEADER_READ: usize = 128;
const KIND_CAP: u8 = 2;
const KIND_MAX: u8 = 11;

/// A damaged message (not a torn tail) that sled would take for the end of its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDamage {
    /// File offset of the first message sled rejects.
    pub bad_offset: u64,
    /// File offset of a later message sled would have accepted; `None` when one changed
    /// bit (or header byte) explains the failure instead.
    pub valid_after: Option<u64>,
}

fn damage(bad_offset: u64, valid_after: Option<u64>) -> io::Result<Option<LogDamage>> {
    Ok(Some(LogDamage {
        bad_offset,
        valid_after,
    }))
}

impl std::fmt::Display for LogDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a log message at byte {} fails its checksum",
            self.bad_offset
        )?;
        match self.valid_after {
            Some(at) => write!(f, " but an intact one follows at byte {at}"),
            None => write!(f, " (one changed bit or header byte explains it)"),
        }
    }
}

/// How sled's recovery reads one message.
#[derive(Debug, PartialEq, Eq)]
enum Msg {
    /// Accepted (any kind sled replays or steps over); its length on disk.
    Ok(usize),
    /// Padding to the end of the segment.
    Cap,
    /// Zeros where a header should be (crc and kind 0): space not written yet, or a slot
    /// reserved for a message that was not filled in before a crash.
    Fill,
    /// Rejected. `ours`: the header names this segment with a length that fits, the body
    /// is in the file, yet the crc (or the kind) is wrong; then its end in the segment, and
    /// whether one flipped bit explains the crc.
    Bad { ours: Option<(u64, bool)> },
}

/// Checks the header of every segment of sled's data file without opening it. An
/// all-zero header is an unused segment. Reads 20 bytes per segment.
pub(crate) fn check_segment_headers(db_path: &Path, segment_size: usize) -> Result<(), QueueError> {
    let io_err = |source| QueueError::Io {
        path: db_path.to_path_buf(),
        source,
    };
    let file = File::open(db_path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    let mut offset = 0u64;
    while offset + SEG_HEADER_LEN as u64 <= len {
        let mut header = [0u8; SEG_HEADER_LEN];
        file.read_exact_at(&mut header, offset).map_err(io_err)?;
        if header.iter().any(|&b| b != 0) {
            let stored = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) ^ !0;
            if crc32(&header[4..]) != stored {
                return Err(QueueError::Corrupt {
                    path: db_path.to_path_buf(),
                    detail: format!(
                        "the log segment at byte {offset} has a damaged header; the file was \
                         left untouched: stop using it and run `raxe repair` to recover its events"
                    ),
                });
            }
        }
        offset += segment_size as u64;
    }
    Ok(())
}

/// Scans `dir/db` (segments of `segment_size`) as sled's recovery is about to, and
/// returns the damage it would destroy, if any. Reads every segment sled will replay.
pub fn find_log_damage(dir: &Path, segment_size: usize) -> io::Result<Option<LogDamage>> {
    let file = match File::open(dir.join("db")) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if segment_size <= SEG_HEADER_LEN + MAX_MSG_HEADER_LEN {
        return Ok(None);
    }
    let seg = segment_size as u64;
    let len = file.metadata()?.len();
    let floor = replay_floor(dir, seg);
    let count = len / seg + u64::from(len % seg >= SEG_HEADER_LEN as u64);
    let mut segments = Vec::new();
    for idx in 0..count {
        let mut h = [0u8; SEG_HEADER_LEN];
        if file.read_exact_at(&mut h, idx * seg).is_err() {
            continue;
        }
        let stored = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) ^ !0;
        let lsn = i64::from_le_bytes(h[4..12].try_into().unwrap_or_default()) ^ i64::MAX;
        if crc32(&h[4..]) == stored && lsn >= floor && lsn % seg as i64 == 0 {
            segments.push((lsn, idx * seg));
        }
    }
    segments.sort_unstable();
    segments.dedup_by_key(|s| s.0);
    let mut buf = vec![0u8; segment_size];
    let mut first_bad: Option<u64> = None;
    for (lsn, offset) in segments {
        let n = read_up_to(&file, &mut buf, offset)?;
        let number = lsn as u64 / seg;
        let mut pos = SEG_HEADER_LEN;
        while pos + MAX_MSG_HEADER_LEN <= segment_size {
            match read_message(&buf[..n], pos, segment_size, number) {
                Msg::Ok(used) => {
                    if let Some(bad) = first_bad {
                        return damage(bad, Some(offset + pos as u64));
                    }
                    pos += used;
                }
                Msg::Cap => break,
                // Past a rejected message: does sled accept anything after it?
                Msg::Bad { .. } | Msg::Fill if first_bad.is_some() => {
                    if let Some(at) = next_valid(&buf[..n], pos + 1, segment_size, number) {
                        return damage(first_bad.unwrap_or_default(), Some(offset + at as u64));
                    }
                    break;
                }
                // The end of what sled wrote.
                Msg::Fill => return Ok(None),
                // Written in this use of the segment, yet failing: one flipped bit is
                // damage; anything else may be a write cut by the crash (a kill -9 can
                // stop a pwrite between pages), damage only if something valid follows.
                Msg::Bad {
                    ours: Some((_, one_bit)),
                } => {
                    let bad = offset + pos as u64;
                    if one_bit || one_byte_from_valid(&mut buf[..n], pos, segment_size, number) {
                        return damage(bad, None);
                    }
                    first_bad = Some(bad);
                    if let Some(at) = next_valid(&buf[..n], pos + 1, segment_size, number) {
                        return damage(bad, Some(offset + at as u64));
                    }
                    break;
                }
                // Stale bytes of an earlier use of the segment (the end of the log), unless
                // a single changed byte in its header made a valid message look so.
                Msg::Bad { ours: None } => {
                    if one_byte_from_valid(&mut buf[..n], pos, segment_size, number) {
                        return damage(offset + pos as u64, None);
                    }
                    return Ok(None);
                }
            }
        }
    }
    Ok(None)
}

/// The lsn of the first segment sled replays: that of its newest snapshot's stable lsn
/// (sled picks the last `snap.*` file by name). Without a readable one, everything.
fn replay_floor(dir: &Path, seg: u64) -> i64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let newest = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            name.is_some_and(|n| n.starts_with("snap.") && !n.ends_with(".in___motion"))
        })
        .max();
    let Some(bytes) = newest.and_then(|p| std::fs::read(p).ok()) else {
        return 0;
    };
    if bytes.len() <= 12 + 8 {
        return 0;
    }
    let body = &bytes[..bytes.len() - 12];
    let stored = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap_or_default());
    if crc32(body) != stored {
        return 0;
    }
    // `stable_lsn: Option<i64>` as i64 LE: 0 = None, n >= 1 = Some(n - 1).
    let shifted = i64::from_le_bytes(body[..8].try_into().unwrap_or_default());
    if shifted <= 0 {
        return 0;
    }
    (shifted - 1) / seg as i64 * seg as i64
}

/// Reads up to `buf.len()` bytes at `offset`, fewer at the end of the file.
fn read_up_to(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Standard CRC-32 of the concatenated parts (sled checksums a message's body and header
/// tail together).
fn crc(parts: &[&[u8]]) -> u32 {
    let mut c = Crc32::new();
    for p in parts {
        c.update(p);
    }
    c.finish()
}

/// sled's varint (`serialization.rs`, `impl Serialize for u64`).
fn varint(b: &[u8], at: &mut usize) -> u64 {
    let get = |i: usize| b.get(i).copied().unwrap_or(0);
    let first = get(*at);
    let (v, used) = match first {
        0..=240 => (u64::from(first), 1),
        241..=248 => (
            240 + 256 * (u64::from(first) - 241) + u64::from(get(*at + 1)),
            2,
        ),
        249 => (
            2288 + 256 * u64::from(get(*at + 1)) + u64::from(get(*at + 2)),
            3,
        ),
        _ => {
            let size = first as usize - 247;
            let mut le = [0u8; 8];
            for (i, byte) in le.iter_mut().enumerate().take(size) {
                *byte = get(*at + 1 + i);
            }
            (u64::from_le_bytes(le), size + 1)
        }
    };
    *at += used;
    v
}

/// Reads the message at `pos` of a segment (`data`: its bytes, perhaps cut by the end of
/// the file) the way sled's `read_message` does, for segment number `number`.
fn read_message(data: &[u8], pos: usize, segment_size: usize, number: u64) -> Msg {
    let mut h = [0u8; HEADER_READ];
    let avail = data.len().saturating_sub(pos).min(HEADER_READ);
    h[..avail].copy_from_slice(&data[pos..pos + avail]);
    if h[..5] == [0; 5] {
        return Msg::Fill;
    }
    let kind = h[4];
    let mut at = 5;
    let len = varint(&h, &mut at);
    let seg_no = varint(&h, &mut at);
    let _pid = varint(&h, &mut at);
    let header_len = at;
    let room = segment_size.saturating_sub(pos + header_len) as u64;
    let start = pos + header_len;
    // A length past the segment, the end of the file (a torn tail, which a changed byte
    // never makes) or another segment's number (a stale message): not ours.
    let body = (len <= room)
        .then(|| data.get(start..start + len as usize))
        .flatten();
    let Some(body) = body.filter(|_| seg_no == number) else {
        return Msg::Bad { ours: None };
    };
    let end = (start + len as usize) as u64;
    let stored = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let syndrome = crc(&[body, &h[4..header_len]]) ^ !0 ^ stored;
    if syndrome != 0 || kind == 0 || kind > KIND_MAX {
        let one_bit =
            syndrome.count_ones() == 1 || single_bit_error(syndrome, body.len() + header_len - 4);
        return Msg::Bad {
            ours: Some((end, one_bit)),
        };
    }
    if kind == KIND_CAP {
        Msg::Cap
    } else {
        Msg::Ok(header_len + len as usize)
    }
}

/// CRC-32 (reflected 0xEDB88320) table, for [`single_bit_error`].
const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// Whether flipping one bit of an `n`-byte input changes its CRC-32 by `syndrome`. The
/// CRC is affine, so a flipped bit `b` of byte `i` changes it by the CRC (zero initial
/// value and final xor) of `1 << b` followed by `n - 1 - i` zero bytes: walk back from the
/// last byte, eight candidates at a time. A random change (a torn write) matches one of
/// these `8n` values with odds of about `8n / 2^32`.
fn single_bit_error(syndrome: u32, n: usize) -> bool {
    let mut c: [u32; 8] = std::array::from_fn(|b| TABLE[1 << b]);
    for _ in 0..n {
        if c.contains(&syndrome) {
            return true;
        }
        for v in &mut c {
            *v = TABLE[(*v & 0xFF) as usize] ^ (*v >> 8);
        }
    }
    false
}

/// Whether changing one byte of the header at `pos` (kind, length, segment number, page
/// id: the bytes that decide where the message ends and whether it is this segment's)
/// makes a message sled accepts. A few thousand header parses; a crc only when the
/// segment number matches.
fn one_byte_from_valid(data: &mut [u8], pos: usize, segment_size: usize, number: u64) -> bool {
    // Of a header that already names this segment, every trial costs a crc of the body:
    // try flipped bits only.
    let bits_only = matches!(
        read_message(data, pos, segment_size, number),
        Msg::Bad { ours: Some(_) }
    );
    let end = (pos + 4 + 3 * 9).min(data.len());
    for at in pos + 4..end {
        let was = data[at];
        for k in 0..=255u8 {
            let v = if bits_only { was ^ (1 << (k % 8)) } else { k };
            if v == was || (bits_only && k >= 8) {
                continue;
            }
            data[at] = v;
            if matches!(
                read_message(data, pos, segment_size, number),
                Msg::Ok(_) | Msg::Cap
            ) {
                data[at] = was;
                return true;
            }
        }
        data[at] = was;
    }
    false
}

/// The first position at or after `from` where a message sled accepts starts (not a
/// `Cap`: padding holds no data).
fn next_valid(data: &[u8], from: usize, segment_size: usize, number: u64) -> Option<usize> {
    let last = segment_size.checked_sub(MAX_MSG_HEADER_LEN)?;
    (from..=last.min(data.len())).find(|&p| {
        // Cheap filters first: a known kind, not the padding.
        let kind = data.get(p + 4).copied().unwrap_or(0);
        (1..=KIND_MAX).contains(&kind)
            && kind != KIND_CAP
            && matches!(read_message(data, p, segment_size, number), Msg::Ok(_))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes a message the way sled does (varints via the same table).
    fn message(kind: u8, number: u64, pid: u64, body: &[u8]) -> Vec<u8> {
        fn enc(v: u64, out: &mut Vec<u8>) {
            if v <= 240 {
                out.push(v as u8);
            } else if v <= 2287 {
                out.push(((v - 240) / 256 + 241) as u8);
                out.push(((v - 240) % 256) as u8);
            } else if v <= 67823 {
                out.push(249);
                out.push(((v - 2288) / 256) as u8);
                out.push(((v - 2288) % 256) as u8);
            } else {
                out.push(255);
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        let mut m = vec![0, 0, 0, 0, kind];
        enc(body.len() as u64, &mut m);
        enc(number, &mut m);
        enc(pid, &mut m);
        let c = crc(&[body, &m[4..]]) ^ !0;
        m[..4].copy_from_slice(&c.to_le_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn varints_round_trip_through_the_boundaries() {
        for v in [0u64, 240, 241, 2287, 2288, 67823, 67824, 1 << 40] {
            let m = message(8, v, 0, b"");
            let mut at = 5;
            varint(&m, &mut at);
            assert_eq!(varint(&m, &mut at), v);
        }
    }

    #[test]
    fn reads_messages_like_sled() {
        let seg = 4096;
        let mut data = vec![0u8; SEG_HEADER_LEN];
        let a = message(8, 3, 7, &[9; 300]);
        data.extend_from_slice(&a);
        let at = data.len();
        let b = message(10, 3, 7, &[5; 40]);
        data.extend_from_slice(&b);
        assert_eq!(
            read_message(&data, SEG_HEADER_LEN, seg, 3),
            Msg::Ok(a.len())
        );
        assert_eq!(read_message(&data, at, seg, 3), Msg::Ok(b.len()));
        // Stale (another segment number): rejected, not ours.
        assert_eq!(read_message(&data, at, seg, 4), Msg::Bad { ours: None });
        // Zeros after the last message.
        assert_eq!(read_message(&data, data.len(), seg, 3), Msg::Fill);
        let mut flipped = data.clone();
        flipped[SEG_HEADER_LEN + 100] ^= 0x10;
        assert_eq!(
            read_message(&flipped, SEG_HEADER_LEN, seg, 3),
            Msg::Bad {
                ours: Some(((SEG_HEADER_LEN + a.len()) as u64, true))
            }
        );
        // More than one bit changed (a torn write): ours, not explained by one bit.
        flipped[SEG_HEADER_LEN + 200] ^= 0x01;
        assert!(matches!(
            read_message(&flipped, SEG_HEADER_LEN, seg, 3),
            Msg::Bad {
                ours: Some((_, false))
            }
        ));
        assert_eq!(next_valid(&flipped, SEG_HEADER_LEN + 1, seg, 3), Some(at));
        assert_eq!(next_valid(&data, data.len(), seg, 3), None);
        // Every single flipped bit of a message is caught: the message is rejected, and
        // either ours and explained by one bit, or one byte away from valid; a changed
        // byte in the header too. A stale message is neither.
        for i in 0..a.len() {
            for x in [0x01, 0x10, 0x80, 0xFF] {
                let mut d = data.clone();
                d[SEG_HEADER_LEN + i] ^= x;
                let case = format!("byte {i} ^ {x:#x}");
                match read_message(&d, SEG_HEADER_LEN, seg, 3) {
                    Msg::Bad {
                        ours: Some((_, one_bit)),
                    } => assert!(
                        one_bit || x == 0xFF || one_byte_from_valid(&mut d, SEG_HEADER_LEN, seg, 3),
                        "{case}"
                    ),
                    Msg::Bad { ours: None } => {
                        assert!(
                            one_byte_from_valid(&mut d, SEG_HEADER_LEN, seg, 3),
                            "{case}"
                        )
                    }
                    other => panic!("{case}: {other:?}"),
                }
            }
        }
        let mut stale = data.clone();
        assert!(!one_byte_from_valid(&mut stale, at, seg, 5));
        assert_eq!(stale, data);
    }
}
