//! Batching HEC envelopes into requests: concatenated envelopes (each ends in `\n`),
//! split so no uncompressed body exceeds `max_bytes`, then optionally gzipped.

use http::{HeaderMap, Uri};

use super::encoder::{envelope_fields, write_envelope, write_json_envelope, HecMeta};
use crate::adapter::EncodedBatch;
use crate::event::{JsonEvent, ScanEvent};
use crate::http_common::{pack_with, post, CONCAT};

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
        self.pack(batch.len(), |i, out| {
            write_envelope(&self.meta, &batch[i], out)
        })
    }

    /// [`HecRequestBuilder::build`] for queued JSON events: the same bytes.
    pub fn build_json(&self, batch: &[JsonEvent]) -> EncodedBatch {
        let fields = envelope_fields(&self.meta);
        self.pack(batch.len(), |i, out| {
            write_json_envelope(&fields, &batch[i], out)
        })
    }

    fn pack(&self, count: usize, write: impl FnMut(usize, &mut Vec<u8>)) -> EncodedBatch {
        let max = self.max_bytes;
        pack_with(
            count,
            write,
            CONCAT,
            max,
            |n| format!("event envelope is {n} bytes, over the request limit of {max} bytes"),
            |_, body| post(&self.uri, &self.headers, body, self.compress),
        )
    }
}
