//! Logs Ingestion request bodies: JSON arrays of PascalCase records, each request at most
//! `max` bytes both before and after gzip (protocols.md §3.2: 1 MB, counted both ways).
//!
//! Promises: every event lands in exactly one request or in `oversized`, both lists in
//! batch order (the engine walks them side by side). Records are packed greedily by their
//! uncompressed size; a request whose *compressed* body is still over `max` (incompressible
//! data) is split in halves until it fits, and a lone record that cannot fit is oversized.

use std::ops::Range;

use crate::adapter::EncodedBatch;
use crate::request::{EncodedRequest, HttpRequest, Payload};

/// Packs `items` (one JSON record each) into requests built by `make(uncompressed body)`.
pub fn encode(
    items: &[Vec<u8>],
    max: usize,
    make: &dyn Fn(Vec<u8>) -> HttpRequest,
) -> EncodedBatch {
    let mut batch = EncodedBatch::default();
    let mut start = 0usize;
    // `[` + `]` and one `,` per record after the first.
    let mut len = 2usize;
    for (i, item) in items.iter().enumerate() {
        if item.len() + 2 > max {
            build(items, start..i, max, make, &mut batch);
            batch.oversized.push((i, too_big(item.len() + 2, max)));
            start = i + 1;
            len = 2;
            continue;
        }
        let grown = len + item.len() + usize::from(i > start);
        if i > start && grown > max {
            build(items, start..i, max, make, &mut batch);
            start = i;
            len = 2 + item.len();
        } else {
            len = grown;
        }
    }
    build(items, start..items.len(), max, make, &mut batch);
    batch
}

fn too_big(n: usize, max: usize) -> String {
    format!("record is {n} bytes, over the Logs Ingestion limit of {max} bytes per request")
}

/// One request for `range`, or halves of it while the sent body is over `max`.
fn build(
    items: &[Vec<u8>],
    range: Range<usize>,
    max: usize,
    make: &dyn Fn(Vec<u8>) -> HttpRequest,
    batch: &mut EncodedBatch,
) {
    if range.is_empty() {
        return;
    }
    let req = make(array(&items[range.clone()]));
    if req.body.len() <= max {
        batch.requests.push(EncodedRequest {
            events: range,
            payload: Payload::Http(req),
        });
    } else if range.len() == 1 {
        batch
            .oversized
            .push((range.start, too_big(req.body.len(), max)));
    } else {
        let mid = range.start + range.len() / 2;
        build(items, range.start..mid, max, make, batch);
        build(items, mid..range.end, max, make, batch);
    }
}

/// `[a,b,...]`.
fn array(items: &[Vec<u8>]) -> Vec<u8> {
    let total: usize = items.iter().map(|i| i.len() + 1).sum::<usize>() + 1;
    let mut body = Vec::with_capacity(total);
    body.push(b'[');
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.push(b']');
    body
}
