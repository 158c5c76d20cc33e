//! Shared pieces of the HTTP destinations: packing events into size-bounded requests,
//! gzip, default API paths, `Retry-After`, and quoting response bodies.

use std::ops::Range;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Method, Uri};

use crate::adapter::EncodedBatch;
use crate::outcome::Outcome;
use crate::request::{EncodedRequest, HttpRequest, HttpResponse, Payload, TransportError};

/// How per-event items are joined into one body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyFraming {
    pub prefix: &'static [u8],
    pub separator: &'static [u8],
    pub suffix: &'static [u8],
}

/// Concatenation (HEC envelopes and CEF lines end with their own `\n`).
pub(crate) const CONCAT: BodyFraming = BodyFraming {
    prefix: b"",
    separator: b"",
    suffix: b"",
};

/// A JSON array (Sentinel).
pub(crate) const JSON_ARRAY: BodyFraming = BodyFraming {
    prefix: b"[",
    separator: b",",
    suffix: b"]",
};

/// Groups `count_items` consecutive items into bodies of at most `max_body` bytes
/// (uncompressed, framing included). An item that cannot fit even alone goes to
/// `oversized`. `write_item(i, out)` appends item `i` to `out` (an emptied scratch buffer,
/// reused: no allocation per item); `make` turns (events, uncompressed body) into the
/// request.
pub(crate) fn pack_with(
    count_items: usize,
    mut write_item: impl FnMut(usize, &mut Vec<u8>),
    framing: BodyFraming,
    max_body: usize,
    oversize_reason: impl Fn(usize) -> String,
    mut make: impl FnMut(Range<usize>, Vec<u8>) -> HttpRequest,
) -> EncodedBatch {
    let mut batch = EncodedBatch::default();
    let fixed = framing.prefix.len() + framing.suffix.len();
    let mut body: Vec<u8> = Vec::new();
    let mut item: Vec<u8> = Vec::with_capacity(1024);
    let mut start = 0usize;
    let mut count = 0usize;
    let mut flush = |body: &mut Vec<u8>, start: usize, count: usize, batch: &mut EncodedBatch| {
        if count == 0 {
            return;
        }
        body.extend_from_slice(framing.suffix);
        let events = start..start + count;
        let req = make(events.clone(), std::mem::take(body));
        batch.requests.push(EncodedRequest {
            events,
            payload: Payload::Http(req),
        });
    };
    for i in 0..count_items {
        item.clear();
        write_item(i, &mut item);
        if item.len() + fixed > max_body {
            flush(&mut body, start, count, &mut batch);
            count = 0;
            batch
                .oversized
                .push((i, oversize_reason(item.len() + fixed)));
            continue;
        }
        let grown = body.len() + framing.separator.len() + item.len() + framing.suffix.len();
        if count > 0 && grown > max_body {
            flush(&mut body, start, count, &mut batch);
            count = 0;
        }
        if count == 0 {
            start = i;
            // Sized for a typical full body, so it is not regrown on the way.
            let estimate = (item.len() + framing.separator.len()) * (count_items - i) + fixed;
            body.reserve(estimate.min(max_body));
            body.extend_from_slice(framing.prefix);
        } else {
            body.extend_from_slice(framing.separator);
        }
        body.extend_from_slice(&item);
        count += 1;
    }
    flush(&mut body, start, count, &mut batch);
    batch
}

thread_local! {
    /// One deflate state per thread, reset for each body: a fresh one allocates and clears
    /// a few hundred KB, which profiled at ~6% of all the work per delivered event.
    static DEFLATE: std::cell::RefCell<flate2::Compress> =
        std::cell::RefCell::new(flate2::Compress::new(flate2::Compression::fast(), false));
}

/// One gzip member (RFC 1952) at the fast level (1): on the 2-core target it is ~2-3x
/// faster than level 6 for ~15% larger bodies (see benches/src/bin/encode_bench.rs).
pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    // Header: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
    let mut out = Vec::with_capacity(data.len() / 3 + 64);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    DEFLATE.with(|deflate| {
        let mut deflate = deflate.borrow_mut();
        deflate.reset();
        loop {
            let consumed = deflate.total_in() as usize;
            let status = deflate
                .compress_vec(&data[consumed..], &mut out, flate2::FlushCompress::Finish)
                .expect("deflate into a Vec cannot fail");
            if status == flate2::Status::StreamEnd {
                break;
            }
            // Out of room: compress_vec only writes into spare capacity.
            out.reserve(out.capacity().max(4096));
        }
    });
    // crc32fast uses the CPU's carry-less multiply: ~5x fewer instructions per byte than
    // flate2's table CRC (the gzip trailer was ~4% of all the work per delivered event).
    out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// A POST with `body` (compressed if `compress`), `headers` cloned.
pub(crate) fn post(uri: &Uri, headers: &HeaderMap, body: Vec<u8>, compress: bool) -> HttpRequest {
    let uncompressed_len = body.len();
    let mut headers = headers.clone();
    let body = if compress {
        headers.insert(
            http::header::CONTENT_ENCODING,
            HeaderValue::from_static("gzip"),
        );
        gzip(&body)
    } else {
        body
    };
    HttpRequest {
        method: Method::POST,
        uri: uri.clone(),
        headers,
        body: Bytes::from(body),
        uncompressed_len,
    }
}

/// The configured URI, with `default_path` (which may carry a query) when it has no path.
pub(crate) fn with_default_path(uri: &Uri, default_path: &str) -> Uri {
    let path = uri.path();
    if !(path.is_empty() || path == "/") || uri.query().is_some() {
        return uri.clone();
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(default_path.parse().expect("static path"));
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

/// A sensitive header value (hidden from hyper's debug output) for a credential.
pub(crate) fn secret_header(value: &str) -> Result<HeaderValue, crate::config::ConfigError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| {
        crate::config::ConfigError::InvalidToken(
            "the token contains characters not allowed in an HTTP header",
        )
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// `Retry-After` as a delay: delta-seconds or an HTTP-date (relative to now).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    retry_after_at(headers, SystemTime::now())
}

/// `Retry-After` relative to `now` (testable).
pub fn retry_after_at(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The first 256 characters of a response body, for reasons.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut out: String = text.chars().take(256).collect();
    if text.chars().count() > 256 {
        out.push('…');
    }
    out
}

/// `HTTP 503: {body}` for reasons.
pub(crate) fn describe(resp: &HttpResponse) -> String {
    let body = snippet(&resp.body);
    if body.is_empty() {
        format!("HTTP {}", resp.status.as_u16())
    } else {
        format!("HTTP {}: {body}", resp.status.as_u16())
    }
}

/// An HTTP request that got no answer: always retry (protocols.md §0.5).
pub fn classify_transport_error(err: &TransportError) -> Outcome {
    Outcome::Retry {
        after: None,
        reason: err.to_string(),
    }
}

/// A syslog batch that failed: retry, except a TLS certificate failure (stays broken
/// until the configuration or the peer's certificate changes).
pub fn classify_syslog_transport_error(err: &TransportError) -> Outcome {
    match err {
        TransportError::Tls(msg) if msg.to_ascii_lowercase().contains("certificate") => {
            Outcome::Misconfigured {
                reason: format!("TLS certificate failure: {msg}"),
            }
        }
        other => Outcome::Retry {
            after: None,
            reason: other.to_string(),
        },
    }
}

/// `Retry` honouring `Retry-After`.
pub(crate) fn retry(resp: &HttpResponse) -> Outcome {
    Outcome::Retry {
        after: retry_after(&resp.headers),
        reason: describe(resp),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    /// The reused deflate state is reset between bodies: every body, empty to larger than
    /// any buffer guess, decodes to exactly its input.
    #[test]
    fn gzip_bodies_decode_to_their_input() {
        let big: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"{\"event\":1}".to_vec(),
            big,
            br#"{"a":"b"}"#.repeat(10_000),
            b"x".to_vec(),
        ];
        for input in inputs {
            let body = super::gzip(&input);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, input);
        }
    }
}
