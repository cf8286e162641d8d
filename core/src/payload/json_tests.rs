//! JSON decoding tests: key maps, timestamp forms, arrays, and the errors a
//! misconfigured or misbehaving sender gets back.

use super::*;
use crate::reading::{Field, Source};

fn decoder(f: impl FnOnce(&mut JsonFormat)) -> Decoder {
    let mut config = DecoderConfig::default();
    f(&mut config.json);
    Decoder::new(config)
}

fn ok(d: &Decoder, payload: &str) -> Vec<Reading> {
    let mut out = Vec::new();
    let n = d.decode(payload.as_bytes(), &mut out).unwrap_or_else(|e| panic!("{payload}: {e}"));
    assert_eq!(n, out.len());
    out
}

fn err(d: &Decoder, payload: &str) -> DecodeError {
    let mut out = Vec::new();
    let e = d.decode(payload.as_bytes(), &mut out).unwrap_err();
    assert!(out.is_empty(), "a failed decode must not append");
    e
}

#[test]
fn default_keys_decode_a_raw_reading() {
    let d = decoder(|_| {});
    let r = ok(&d, r#" {"ts": 1670492819.25, "sensor": "meter-1", "p_l1": 230.5, "q_l1": -3, "extra": {"a": [1]}}"#);
    assert_eq!(r.len(), 1);
    let r = &r[0];
    assert_eq!((r.sensor.as_str(), r.source, r.ts_ms), ("meter-1", Source::Raw, 1_670_492_819_250));
    assert_eq!(r.get(Field::PL1), Some(230.5));
    assert_eq!(r.get(Field::QL1), Some(-3.0));
    assert_eq!(r.iter().count(), 2);
}

#[test]
fn custom_key_map_and_millisecond_numbers() {
    let d = decoder(|j| {
        j.ts_key = "time".into();
        j.sensor_key = "id".into();
        j.ts_unit = TsUnit::Millis;
        j.fields = [("P1".to_owned(), Field::PL1), ("U1".to_owned(), Field::VL1)].into();
    });
    let r = &ok(&d, r#"{"time": 1670492819123, "id": 42, "P1": 1, "U1": 229.9, "p_l1": 99}"#)[0];
    assert_eq!((r.sensor.as_str(), r.ts_ms), ("42", 1_670_492_819_123));
    assert_eq!(r.get(Field::PL1), Some(1.0), "p_l1 is not in the custom map");
    assert_eq!(r.get(Field::VL1), Some(229.9));
}

#[test]
fn rfc3339_timestamps_are_accepted() {
    let d = decoder(|_| {});
    let r = &ok(&d, r#"{"ts": "2022-12-08T10:46:59.5+01:00", "sensor": "s", "p_l2": 1}"#)[0];
    assert_eq!(r.ts_ms, 1_670_492_819_500);
    let e = err(&d, r#"{"ts": "yesterday", "sensor": "s", "p_l2": 1}"#);
    assert_eq!(e, DecodeError::BadTimestampText("yesterday".into()));
    assert_eq!(e.kind(), "bad_timestamp");
    let e = err(&d, r#"{"ts": "1999-12-31T23:59:59Z", "sensor": "s", "p_l2": 1}"#);
    assert_eq!(e, DecodeError::BadTimestamp(946_684_799.0));
}

#[test]
fn arrays_decode_all_or_nothing() {
    let d = decoder(|_| {});
    let rs = ok(&d, r#"[{"ts": 1670492819, "sensor": "a", "p_l1": 1}, {"ts": 1670492820, "sensor": "b", "p_l1": 2}]"#);
    assert_eq!(rs.iter().map(|r| r.sensor.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert!(ok(&d, "[]").is_empty());
    let e = err(&d, r#"[{"ts": 1670492819, "sensor": "a", "p_l1": 1}, {"ts": 1670492820, "p_l1": 2}]"#);
    assert_eq!(e, DecodeError::MissingKey("sensor".into()));
    let e = err(&d, r#"[{"ts": 1670492819, "sensor": "a", "p_l1": 1}, 5]"#);
    assert_eq!(e.kind(), "json");
}

#[test]
fn missing_keys_and_empty_readings_are_typed_errors() {
    let d = decoder(|_| {});
    let e = err(&d, r#"{"sensor": "a", "p_l1": 1}"#);
    assert_eq!(e, DecodeError::MissingKey("ts".into()));
    assert_eq!(e.to_string(), r#"JSON reading has no "ts" key"#);
    assert_eq!(e.kind(), "missing_key");
    let e = err(&d, r#"{"ts": 1670492819, "sensor": "a", "P1": 1}"#);
    assert_eq!(e, DecodeError::NoFields("a".into()));
    assert_eq!(e.kind(), "no_fields");
}

#[test]
fn null_fields_are_absent_but_other_non_numbers_are_errors() {
    let d = decoder(|_| {});
    let r = &ok(&d, r#"{"ts": 1670492819, "sensor": "a", "p_l1": null, "p_l2": 2}"#)[0];
    assert_eq!((r.get(Field::PL1), r.get(Field::PL2)), (None, Some(2.0)));
    for bad in [r#""NaN""#, "true", "[1]", "NaN", "Infinity"] {
        let e = err(&d, &format!(r#"{{"ts": 1670492819, "sensor": "a", "p_l1": {bad}}}"#));
        assert_eq!(e.kind(), "json", "{bad}: {e}");
    }
    let e = err(&d, r#"{"ts": 1670492819, "sensor": "a", "p_l1": "1.5"}"#);
    assert!(e.to_string().contains(r#"a number or null under key "p_l1""#), "{e}");
    // serde_json refuses out-of-range numbers itself, so none reach us as infinity.
    let e = err(&d, r#"{"ts": 1670492819, "sensor": "a", "p_l1": 1e400}"#);
    assert_eq!(e.kind(), "json", "{e}");
}

#[test]
fn bad_sensor_and_timestamp_values() {
    let d = decoder(|_| {});
    for bad in [r#""""#, "1.5", "true", "null"] {
        let e = err(&d, &format!(r#"{{"ts": 1670492819, "sensor": {bad}, "p_l1": 1}}"#));
        assert!(e.to_string().contains(r#"sensor id under key "sensor""#), "{bad}: {e}");
    }
    let e = err(&d, r#"{"ts": 1670492819000, "sensor": "a", "p_l1": 1}"#);
    assert_eq!(e, DecodeError::BadTimestamp(1_670_492_819_000.0), "ms sent to a seconds config");
    let e = err(&d, r#"{"ts": null, "sensor": "a", "p_l1": 1}"#);
    assert_eq!(e.kind(), "json");
}

#[test]
fn syntax_errors_quote_the_payload() {
    let d = decoder(|_| {});
    let e = err(&d, r#"{"ts": 1670492819, "sensor": "a", "p_l1": 1"#);
    let msg = e.to_string();
    assert!(msg.starts_with("invalid JSON payload: "), "{msg}");
    assert!(msg.contains(r#"`{"ts": 1670492819"#), "{msg}");
    let e = err(&d, r#"{"ts": 1670492819, "sensor": "a", "p_l1": 1} trailing"#);
    assert_eq!(e.kind(), "json");
    let long = format!(r#"{{"ts": 1670492819, "sensor": "a", "pad": "{}", "p_l1": }}"#, "x".repeat(500));
    assert!(err(&d, &long).to_string().len() < 300, "the message quotes a bounded snippet");
}
