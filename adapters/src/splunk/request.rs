//! Batching HEC envelopes into requests: concatenated envelopes (each ends in `\n`),
//! split so no uncompressed body exceeds `max_bytes`, then optionally gzipped.

use http::{HeaderMap, Uri};

use super::encoder::{write_envelope, HecMeta};
use crate::adapter::EncodedBatch;
use crate::event::ScanEvent;
use crate::http_common::{pack, post, CONCAT};

#[derive(Debug, Clone)]
pub struct HecRequestBuilder {
    pub meta: HecMeta,
    pub uri: Uri,
    /// Authorization and Content-Type (Content-Encoding is added when compressing).
    pub headers: HeaderMap,
    pub compress: bool,
    /// Largest uncompressed body.
    pub max_bytes: usize,
}

impl HecRequestBuilder {
    pub fn build(&self, batch: &[ScanEvent]) -> EncodedBatch {
        let items = batch
            .iter()
            .map(|e| {
                let mut out = Vec::with_capacity(512);
                write_envelope(&self.meta, e, &mut out);
                out
            })
            .collect();
        let max = self.max_bytes;
        pack(
            items,
            CONCAT,
            max,
            |n| format!("event envelope is {n} bytes, over the request limit of {max} bytes"),
            |_, body| post(&self.uri, &self.headers, body, self.compress),
        )
    }
}
