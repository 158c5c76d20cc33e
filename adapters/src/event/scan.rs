//! A hand-written scanner for the flat objects agents write, feeding the one-pass
//! encoding in `normalize`. serde_json spends ~300 instructions on every string token
//! (key or value); a typical event has ~30, so this scanner does the common shape in
//! about a third of that and gives up (`None`) on anything else: an escape in a string,
//! a nested value, a duplicate key, a wrong type. Whoever gets `None` uses the serde path,
//! which is exact by construction; the two are compared byte for byte in the tests.

use std::borrow::Cow;

use serde_json::Value;

use super::normalize::{Extra, Fast};
use super::parse::{timestamp, timestamp_str, DROPPED_FIELD};
use super::Severity;

/// Scans one line (valid UTF-8 is checked here) into its fields.
pub(crate) fn scan(line: &[u8]) -> Option<Fast<'_>> {
    scan_with(line, None)
}

/// [`scan`] for the JSON of a queue record, whose time (`timestamp_ms`) its header holds:
/// the JSON's copy of it (text, as records are written) is skipped, not parsed again.
pub(crate) fn scan_record(json: &[u8], timestamp_ms: i64) -> Option<Fast<'_>> {
    scan_with(json, Some(timestamp_ms))
}

fn scan_with(line: &[u8], known_time: Option<i64>) -> Option<Fast<'_>> {
    let text = std::str::from_utf8(line).ok()?;
    let mut s = Scanner {
        b: text.as_bytes(),
        text,
        at: 0,
        known_time,
    };
    let mut f = Fast::default();
    s.ws();
    s.eat(b'{')?;
    s.ws();
    if s.peek()? == b'}' {
        s.at += 1;
    } else {
        loop {
            let key = s.string()?;
            s.ws();
            s.eat(b':')?;
            s.ws();
            s.field(key, &mut f)?;
            s.ws();
            match s.next()? {
                b',' => s.ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.ws();
    if s.at != s.b.len() {
        return None;
    }
    Some(f)
}

struct Scanner<'a> {
    b: &'a [u8],
    text: &'a str,
    at: usize,
    /// The event's time when it is known already (see [`scan_record`]).
    known_time: Option<i64>,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.at += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// A string without escapes or control characters, borrowed.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let len = plain_run(&self.b[start..]);
        if self.b.get(start + len) != Some(&b'"') {
            return None;
        }
        self.at = start + len + 1;
        // Quotes are ASCII, so both ends are on character boundaries.
        Some(&self.text[start..start + len])
    }

    /// A JSON number token, as text.
    fn number(&mut self) -> Option<&'a str> {
        let start = self.at;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.peek() {
            self.at += 1;
        }
        (self.at > start).then(|| &self.text[start..self.at])
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.b.get(self.at..end)? == word).then(|| self.at = end)
    }

    fn bool(&mut self) -> Option<bool> {
        match self.peek()? {
            b't' => self.literal(b"true").map(|_| true),
            b'f' => self.literal(b"false").map(|_| false),
            _ => None,
        }
    }

    /// A non-negative integer that fits u64 (serde's u64 rules; floats give up).
    fn uint(&mut self) -> Option<u64> {
        match number_value(self.number()?)? {
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    fn strings(&mut self) -> Option<Vec<Cow<'a, str>>> {
        self.eat(b'[')?;
        self.ws();
        let mut out = Vec::with_capacity(4);
        if self.peek()? == b']' {
            self.at += 1;
            return Some(out);
        }
        loop {
            out.push(Cow::Borrowed(self.string()?));
            self.ws();
            match self.next()? {
                b',' => self.ws(),
                b']' => return Some(out),
                _ => return None,
            }
        }
    }

    /// One field's value into its slot; `None` gives the line up.
    fn field(&mut self, key: &'a str, f: &mut Fast<'a>) -> Option<()> {
        fn set<T>(slot: &mut Option<T>, v: T) -> Option<()> {
            slot.is_none().then(|| *slot = Some(v))
        }
        let s = |sc: &mut Self| sc.string().map(Cow::Borrowed);
        match key {
            "event_id" => set(&mut f.event_id, s(self)?),
            "timestamp" => {
                let text = self.peek()? == b'"';
                let token = if text { self.string()? } else { self.number()? };
                // A record's time is text (`Rfc3339Ms`); anything else is read as before.
                let ms = match self.known_time {
                    Some(ms) if text => ms,
                    _ if text => timestamp_str(token).ok()?,
                    _ => timestamp(number_value(token)?).ok()?,
                };
                set(&mut f.timestamp_ms, ms)
            }
            "event_type" => set(&mut f.event_type, s(self)?),
            "threat_detected" => set(&mut f.threat_detected, self.bool()?),
            "severity" => set(&mut f.severity, Severity::parse(self.string()?)?),
            "rule_ids" => set(&mut f.rule_ids, self.strings()?),
            "families" => set(&mut f.families, self.strings()?),
            "prompt_hash" => set(&mut f.prompt_hash, s(self)?),
            "prompt_length" => set(&mut f.prompt_length, self.uint()?),
            "detection_count" => set(&mut f.detection_count, self.uint()?),
            "scan_duration_ms" => {
                let Value::Number(n) = number_value(self.number()?)? else {
                    return None;
                };
                set(&mut f.scan_duration_ms, n.as_f64()?)
            }
            "customer_id" => set(&mut f.customer_id, s(self)?),
            "mssp_id" => set(&mut f.mssp_id, s(self)?),
            "agent_id" => set(&mut f.agent_id, s(self)?),
            "installation_id" => set(&mut f.installation_id, s(self)?),
            k if k == DROPPED_FIELD => self.string().map(|_| ()),
            _ => {
                let value = match self.peek()? {
                    b'"' => Extra::Str(Cow::Borrowed(self.string()?)),
                    b't' | b'f' => Extra::Other(Value::Bool(self.bool()?)),
                    b'n' => self.literal(b"null").map(|_| Extra::Other(Value::Null))?,
                    b'-' | b'0'..=b'9' => Extra::Other(number_value(self.number()?)?),
                    _ => return None,
                };
                f.extra.push((Cow::Borrowed(key), value));
                Some(())
            }
        }
    }
}

/// How many bytes at the start of `b` can sit in a JSON string as they are: the index of
/// the first byte that [`ends_plain_run`] says ends it, or `b.len()`. Eight bytes per step
/// (SWAR): a flagged byte's borrow can flag bytes above it in the same word, never below, so
/// the lowest flag is exact. With it `scan` takes 4.9k instead of 7.4k instructions on a
/// typical agent line (callgrind).
pub(crate) fn plain_run(b: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(word) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        // Bytes equal to zero after the xor, and bytes below 0x20 (high bit clear).
        let hits = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (w.wrapping_sub(ONES * 0x20) & !w);
        let hits = hits & HIGHS;
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + b[i..]
        .iter()
        .position(|&c| ends_plain_run(c))
        .unwrap_or(b.len() - i)
}

/// A quote, a backslash or a control character: the end of a string, or something the
/// scanner leaves to serde (an escape, an invalid control character).
const fn ends_plain_run(c: u8) -> bool {
    c == b'"' || c == b'\\' || c < 0x20
}

/// A number token as serde_json reads it (u64, i64 or f64, same rounding): integers
/// are parsed here, anything with a fraction or exponent by serde_json itself.
fn number_value(token: &str) -> Option<Value> {
    let digits = token.strip_prefix('-').unwrap_or(token);
    let plain = !digits.is_empty()
        && digits.bytes().all(|c| c.is_ascii_digit())
        && (digits.len() == 1 || !digits.starts_with('0'));
    // serde_json reads `-0` as the float -0.0: leave it to serde_json.
    if plain && digits.len() <= 18 && token != "-0" {
        let v: i64 = token.parse().ok()?;
        return Some(if v >= 0 {
            Value::from(v as u64)
        } else {
            Value::from(v)
        });
    }
    // Fractions, exponents, long integers, and invalid tokens: serde_json decides.
    serde_json::from_str::<Value>(token)
        .ok()
        .filter(Value::is_number)
}

#[cfg(test)]
mod tests {
    use super::{ends_plain_run, plain_run};

    fn byte_loop(b: &[u8]) -> usize {
        b.iter().position(|&c| ends_plain_run(c)).unwrap_or(b.len())
    }

    /// Every special byte (and its neighbours) at every position of every length up to
    /// three words, over plain ASCII and over UTF-8 continuation bytes.
    #[test]
    fn plain_run_matches_a_byte_loop() {
        let probes = [
            b'"', b'\\', 0x00, 0x01, 0x1f, 0x20, 0x21, 0x22, 0x5b, 0x5c, 0x5d, 0x7f, 0x80, 0x9f,
            0xa2, 0xdc, 0xff,
        ];
        for fill in [b'a', 0xe9, 0x80, 0x23, 0x1f] {
            for len in 0..26 {
                let base = vec![fill; len];
                assert_eq!(plain_run(&base), byte_loop(&base), "{fill:#x} x {len}");
                for at in 0..len {
                    for &p in &probes {
                        let mut b = base.clone();
                        b[at] = p;
                        assert_eq!(
                            plain_run(&b),
                            byte_loop(&b),
                            "{fill:#x} x {len}, {p:#x} at {at}"
                        );
                        // A second special byte after the first must not change the answer.
                        if at + 3 < len {
                            b[at + 3] = b'"';
                            assert_eq!(plain_run(&b), byte_loop(&b), "{p:#x} at {at}, quote after");
                        }
                    }
                }
            }
        }
    }
}
