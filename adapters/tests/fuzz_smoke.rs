//! Runs the cargo-fuzz checks (adapters/fuzz/checks.rs) on seeds and random inputs, so
//! the fuzz targets compile and hold without a nightly toolchain.

#[allow(dead_code)]
mod checks {
    include!("../fuzz/checks.rs");
}

use proptest::prelude::*;

const SEEDS: [&[u8]; 8] = [
    br#"{"customer_id":"c"}"#,
    br#"{"customer_id":"c","severity":"HIGH","rule_ids":["a|b","c=d\n"],"x":1.5e300}"#,
    br#"{"customer_id":"c","timestamp":1751371200.123,"extra":{"n":[1,2,{"z":null}]}}"#,
    br#"{"customer_id":"c","timestamp":"2025-07-01T12:00:00.999999999+14:00"}"#,
    b"[]",
    b"",
    b"\xff\xfe",
    b"a\x01b|c\x01d=e\x01\\\x01\r\n\x01x",
];

#[test]
fn seeds() {
    for s in SEEDS {
        checks::event_parser(s);
        checks::cef_encoder(s);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        checks::event_parser(&data);
        checks::cef_encoder(&data);
    }

    #[test]
    fn random_json_objects(m in proptest::collection::btree_map("[a-z_]{1,12}", "[ -~\\\\|=\\n\\r]{0,12}", 0..6)) {
        let mut m: serde_json::Map<String, serde_json::Value> =
            m.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
        m.insert("customer_id".into(), "c".into());
        m.remove("timestamp");
        m.remove("severity");
        let line = serde_json::to_vec(&m).unwrap();
        checks::event_parser(&line);
    }
}
