//! cargo-fuzz target: agent lines into the event parser (see ../checks.rs).
#![no_main]
#![allow(dead_code)] // checks.rs holds both targets

include!("../checks.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    event_parser(data);
});
