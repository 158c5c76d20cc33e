//! cargo-fuzz target: arbitrary field values into the CEF encoder (see ../checks.rs).
#![no_main]
#![allow(dead_code)] // checks.rs holds both targets

include!("../checks.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cef_encoder(data);
});
