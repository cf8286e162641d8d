//! JSON meter payloads through the decoder's key map (`[decode.json]` in the
//! ingest and predict configs): one object or an array of objects, numeric
//! or RFC 3339 timestamps, null fields. Each input is decoded under three
//! maps: the default (`ts`, `sensor`, every field by its wire name), a
//! renamed one in milliseconds, and one with a field under two names.
//!
//! Beyond "no panic": all or nothing (a failed decode appends nothing), an
//! accepted reading is in range, finite and has a field, and only JSON is
//! ever accepted (bytes that are not UTF-8, or numbers out of range, pass
//! in the keys and values the decoder skips: serde_json does not read those).
#![no_main]

use std::sync::LazyLock;

use gridcast_core::payload::TsUnit;
use gridcast_core::{Decoder, DecoderConfig, Field};
use libfuzzer_sys::fuzz_target;

fn decoders() -> [Decoder; 3] {
    let renamed = {
        let mut c = DecoderConfig::default();
        c.json.ts_key = "time".into();
        c.json.sensor_key = "id".into();
        c.json.ts_unit = TsUnit::Millis;
        c.json.fields =
            [("P1".to_owned(), Field::PL1), ("U1".to_owned(), Field::VL1), ("".to_owned(), Field::QL3)].into();
        c
    };
    let aliased = {
        let mut c = DecoderConfig::default();
        c.json.ts_key = "sensor_ts".into();
        c.json.sensor_key = "ts".into();
        c.json.fields.insert("power".into(), Field::PL1);
        c
    };
    [DecoderConfig::default(), renamed, aliased].map(|c| {
        c.validate().expect("the fuzzed key maps are valid");
        Decoder::new(c)
    })
}

static DECODERS: LazyLock<[Decoder; 3]> = LazyLock::new(decoders);

fuzz_target!(|data: &[u8]| {
    let json = data.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| matches!(b, b'{' | b'['));
    for decoder in DECODERS.iter() {
        let Some(out) = gridcast_fuzz::decode_checked(decoder, data) else { continue };
        if json {
            assert!(out.iter().all(|r| r.iter().next().is_some()), "a JSON reading without fields");
            // Unknown keys are skipped unread (by serde_json, as its
            // IgnoredAny): bytes that are not UTF-8 and numbers out of
            // range pass there. The structure must be JSON.
            assert!(
                serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok(),
                "the decoder accepted what is not JSON"
            );
        }
    }
});
