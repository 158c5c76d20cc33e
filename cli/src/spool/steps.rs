//! Cutting a spool file (or `raxe ingest`'s input) into durable steps, and reading its
//! lines with a bound on what one line may hold in memory.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, BufRead};

/// Events per durable step (one transaction, one fdatasync), at least.
pub(super) const STEP_EVENTS: usize = 1_000;
/// A step spread over many customers grows until each has about this many events (a
/// 20 KiB chunk of scan events): each queue's share of a step is stored as its own chunks,
/// and 1,000 events over 100 customers made chunks of 10 records, five times the sled items
/// per record of full ones.
const STEP_EVENTS_PER_CUSTOMER: usize = 50;
/// Most events per step, however many customers it spans.
const STEP_EVENTS_MAX: usize = 8_000;
/// Most record bytes per step (a step of large events closes early).
const STEP_BYTES_MAX: usize = 4 << 20;

/// When a step is complete: [`STEP_EVENTS`] lines, more when their events span many
/// customers (see [`STEP_EVENTS_PER_CUSTOMER`]), never more than [`STEP_EVENTS_MAX`] lines
/// or [`STEP_BYTES_MAX`] bytes. Rejected lines count too, so a file of bad lines is not
/// held in memory either. `raxe ingest` cuts its batches the same way.
#[derive(Default)]
pub(crate) struct Step {
    /// Accepted and rejected lines.
    lines: usize,
    bytes: usize,
    /// Hashes of the (customer, MSSP) pairs seen, no MSSP being "" as in routing's
    /// `CustomerKey`; a collision only makes the step shorter.
    customers: HashSet<u64>,
    /// The previous event's pair: runs of one customer are counted without hashing.
    last_customer: String,
    last_mssp: String,
}

impl Step {
    /// Counts one event of `customer` (under `mssp`) whose record is `bytes` long.
    pub(crate) fn add(&mut self, customer: &str, mssp: Option<&str>, bytes: usize) {
        self.lines += 1;
        self.bytes += bytes;
        let mssp = mssp.unwrap_or("");
        if self.customers.is_empty() || self.last_customer != customer || self.last_mssp != mssp {
            let mut hasher = DefaultHasher::new();
            (customer, mssp).hash(&mut hasher);
            self.customers.insert(hasher.finish());
            self.last_customer.clear();
            self.last_customer.push_str(customer);
            self.last_mssp.clear();
            self.last_mssp.push_str(mssp);
        }
    }

    /// Counts one rejected line, `bytes` being what is kept of it.
    pub(crate) fn reject(&mut self, bytes: usize) {
        self.lines += 1;
        self.bytes += bytes;
    }

    pub(crate) fn complete(&self) -> bool {
        let wanted =
            (STEP_EVENTS_PER_CUSTOMER * self.customers.len()).clamp(STEP_EVENTS, STEP_EVENTS_MAX);
        self.lines >= wanted || self.bytes >= STEP_BYTES_MAX
    }

    /// Starts the next step.
    pub(crate) fn reset(&mut self) {
        self.lines = 0;
        self.bytes = 0;
        self.customers.clear();
    }
}

/// A line's event text: without the blanks around it and, on a file's first line, without
/// a UTF-8 byte order mark (Windows tools write one: PowerShell 5.1 by default), which
/// would make the first event of such a file invalid JSON.
pub fn line_text(line: &[u8], line_no: usize) -> &[u8] {
    let line = match line_no {
        1 => line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line),
        _ => line,
    };
    line.trim_ascii()
}

/// Reads one line (up to and including `\n`, or to EOF) into `out`, keeping at most
/// `max + 2` bytes of it. Returns (bytes consumed, whether the line without its `\n` is
/// longer than `max`).
pub fn read_line_bounded(
    reader: &mut impl BufRead,
    out: &mut Vec<u8>,
    max: usize,
) -> io::Result<(usize, bool)> {
    let mut consumed = 0;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let (chunk, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        // Room for `max` bytes, the newline, and one byte more to tell a longer line.
        let room = (max + 2).saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let n = chunk.len();
        reader.consume(n);
        consumed += n;
        if done {
            break;
        }
    }
    let content = out.len() - usize::from(out.last() == Some(&b'\n'));
    Ok((consumed, content > max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_lines_report_overflow_without_holding_it() {
        let data = format!("short\n{}\nlast", "x".repeat(100));
        let mut reader = io::Cursor::new(data.into_bytes());
        let mut line = Vec::new();
        assert_eq!(
            read_line_bounded(&mut reader, &mut line, 10).unwrap(),
            (6, false)
        );
        line.clear();
        let (n, long) = read_line_bounded(&mut reader, &mut line, 10).unwrap();
        assert_eq!((n, long, line.len()), (101, true, 12));
        line.clear();
        assert_eq!(
            read_line_bounded(&mut reader, &mut line, 10).unwrap(),
            (4, false)
        );
        assert_eq!(line, b"last");
        line.clear();
        assert_eq!(
            read_line_bounded(&mut reader, &mut line, 10).unwrap(),
            (0, false)
        );
    }

    /// Feeds events (customer `i % customers`) until the step is complete; returns how many.
    fn step_length(customers: usize, bytes: usize) -> usize {
        let mut step = Step::default();
        for i in 1.. {
            step.add(&format!("c{}", i % customers), Some("m1"), bytes);
            if step.complete() {
                return i;
            }
        }
        unreachable!()
    }

    #[test]
    fn steps_grow_with_the_customers_they_span() {
        assert_eq!(step_length(1, 400), STEP_EVENTS);
        assert_eq!(step_length(20, 400), STEP_EVENTS);
        assert_eq!(step_length(100, 400), 100 * STEP_EVENTS_PER_CUSTOMER);
        assert_eq!(step_length(1000, 400), STEP_EVENTS_MAX);
        // Large events close a step by bytes, whatever the customers.
        assert_eq!(step_length(1, 1 << 20), STEP_BYTES_MAX >> 20);
        // The same customer under another MSSP is another queue, as routing sees it: no
        // MSSP and an empty one are the same. A reset forgets all.
        let mut step = Step::default();
        step.add("c", Some("m1"), 10);
        step.add("c", None, 10);
        step.add("c", Some(""), 10);
        step.add("c", None, 10);
        step.add("c", Some("m1"), 10);
        assert_eq!((step.customers.len(), step.lines), (2, 5));
        step.reset();
        step.add("c", Some("m1"), 10);
        assert_eq!((step.customers.len(), step.lines, step.bytes), (1, 1, 10));
        // Rejected lines close a step as well.
        let mut step = Step::default();
        for _ in 0..STEP_EVENTS - 1 {
            step.reject(100);
        }
        assert!(!step.complete());
        step.reject(100);
        assert!(step.complete());
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_not_too_long() {
        for (text, long) in [
            ("0123456789\n", false),
            ("0123456789", false),
            ("0123456789a\n", true),
            ("0123456789a", true),
        ] {
            let mut reader = io::Cursor::new(text.as_bytes().to_vec());
            let mut line = Vec::new();
            let (n, too_long) = read_line_bounded(&mut reader, &mut line, 10).unwrap();
            assert_eq!((n, too_long), (text.len(), long), "{text:?}");
        }
    }
}
