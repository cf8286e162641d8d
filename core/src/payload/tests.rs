//! Decoder tests: the meter's real one-minute example, every error path, and
//! a random-bytes run that only asserts the decoder never panics.

use super::*;
use crate::reading::{Field, Source};

const SENSOR: [u8; 12] = [0x60, 0xa3, 0xae, 0xc3, 0xd2, 0xdd, 0x98, 0x49, 0xd6, 0x93, 0x59, 0x76];
const SENSOR_HEX: &str = "60a3aec3d2dd9849d6935976";

fn decode(payload: &[u8]) -> Result<Vec<Reading>, DecodeError> {
    let mut out = Vec::new();
    let n = Decoder::new(DecoderConfig::default()).decode(payload, &mut out)?;
    assert_eq!(n, out.len());
    Ok(out)
}

fn decode_err(payload: &[u8]) -> DecodeError {
    let mut out = vec![Reading::new(crate::SensorId::new("keep"), Source::Raw, 0)];
    let err = Decoder::new(DecoderConfig::default()).decode(payload, &mut out).unwrap_err();
    assert_eq!(out.len(), 1, "a failed decode must not touch out: {err}");
    err
}

#[test]
fn one_minute_matches_the_meters_decoded_example() {
    // shared/clemap/decoded_one_minute_example.json, in thousandths.
    let per_phase = [
        [235_491, 1_303, 335_561, 277_584, -89_605, 827, 137_944],
        [240_360, 579, 152_721, 81_735, -93_377, 535, 136_980],
        [241_424, 929, 244_359, 207_999, -98_382, 850, 138_721],
    ];
    let payload = encode_one_minute(1_670_492_819.0, &SENSOR, 0, per_phase, [4_630, 1_363, 3_469]);
    assert_eq!(payload.len(), ONE_MINUTE_LEN);
    let r = decode(&payload).unwrap();
    assert_eq!(r.len(), 1);
    let r = &r[0];
    assert_eq!(r.sensor.as_str(), SENSOR_HEX);
    assert_eq!(r.source, Source::OneMinute);
    assert_eq!(r.ts_ms, 1_670_492_819_000);
    #[rustfmt::skip]
    let expected = [
        ("v_l1", 235.491), ("i_l1", 1.303), ("s_l1", 335.561), ("p_l1", 277.584),
        ("q_l1", -89.605), ("pf_l1", 0.827), ("phi_l1", 137.944),
        ("v_l2", 240.36), ("i_l2", 0.579), ("s_l2", 152.721), ("p_l2", 81.735),
        ("q_l2", -93.377), ("pf_l2", 0.535), ("phi_l2", 136.98),
        ("v_l3", 241.424), ("i_l3", 0.929), ("s_l3", 244.359), ("p_l3", 207.999),
        ("q_l3", -98.382), ("pf_l3", 0.85), ("phi_l3", 138.721),
        ("avg_energy_l1", 4.63), ("avg_energy_l2", 1.363), ("avg_energy_l3", 3.469),
    ];
    assert_eq!(r.iter().count(), expected.len());
    for (name, v) in expected {
        assert_eq!(r.get(Field::from_name(name).unwrap()), Some(v), "{name}");
    }
}

#[test]
fn ten_second_decodes_p_and_q_only() {
    let payload = encode_ten_second(1_670_492_810.5, &SENSOR, 0, [1_000, -2_500, 0], [1, 2, i64::MIN]);
    let r = &decode(&payload).unwrap()[0];
    assert_eq!((r.source, r.ts_ms), (Source::TenSecond, 1_670_492_810_500));
    assert_eq!(r.get(Field::PL1), Some(1.0));
    assert_eq!(r.get(Field::PL2), Some(-2.5));
    assert_eq!(r.get(Field::QL1), Some(0.001));
    assert_eq!(r.get(Field::QL3), Some(i64::MIN as f64 / 1000.0));
    assert_eq!(r.get(Field::VL1), None);
    assert_eq!(r.iter().count(), 6);
}

#[test]
fn raw_batch_decodes_every_record_with_millisecond_time() {
    let mut payload = Vec::new();
    for k in 0..12 {
        let ts = 1_670_492_819.0 + f64::from(k) / 12.0;
        payload.extend(encode_raw(FEATURE_RAW, ts, &SENSOR, 0, [k.into(), 0, 0], [0, 0, 0]));
    }
    let rs = decode(&payload).unwrap();
    assert_eq!(rs.len(), 12);
    assert!(rs.iter().all(|r| r.source == Source::Raw && r.sensor.as_str() == SENSOR_HEX));
    assert_eq!(rs[1].ts_ms, 1_670_492_819_083); // 83.33 ms rounds down
    assert_eq!(rs[2].ts_ms, 1_670_492_819_167); // 166.67 ms rounds up
    assert_eq!(rs[11].get(Field::PL1), Some(0.011));
}

#[test]
fn raw_batch_of_several_sensors_keeps_each_records_id() {
    let mut other = SENSOR;
    other[11] = 0x77;
    let mut payload = Vec::new();
    for id in [&SENSOR, &SENSOR, &other, &other, &SENSOR] {
        payload.extend(encode_raw(FEATURE_RAW, 1_670_492_819.0, id, 0, [0; 3], [0; 3]));
    }
    let ids: Vec<String> = decode(&payload).unwrap().iter().map(|r| r.sensor.to_string()).collect();
    let o = "60a3aec3d2dd9849d6935977";
    assert_eq!(ids, [SENSOR_HEX, SENSOR_HEX, o, o, SENSOR_HEX]);
}

#[test]
fn raw_feature_type_is_configurable() {
    let payload = encode_raw(42, 1_670_492_819.0, &SENSOR, 0, [1, 2, 3], [4, 5, 6]);
    let config = DecoderConfig { raw_feature_type: 42, ..DecoderConfig::default() };
    let mut out = Vec::new();
    assert_eq!(Decoder::new(config).decode(&payload, &mut out), Ok(1));
    assert_eq!(decode_err(&payload), DecodeError::UnknownType(42));
}

#[test]
fn wrong_lengths_are_rejected_with_the_numbers_in_the_message() {
    let ten = encode_ten_second(1_670_492_819.0, &SENSOR, 0, [0; 3], [0; 3]);
    let err = decode_err(&ten[..69]);
    assert_eq!(err, DecodeError::WrongLength { feature_type: 16, expected: 70, actual: 69 });
    assert_eq!(err.to_string(), "payload of feature type 16 is 69 bytes, expected 70");
    assert_eq!(err.kind(), "wrong_length");

    let minute = encode_one_minute(1_670_492_819.0, &SENSOR, 0, [[0; 7]; 3], [0; 3]);
    let mut long = minute.to_vec();
    long.push(0);
    assert_eq!(decode_err(&long), DecodeError::WrongLength { feature_type: 17, expected: 130, actual: 131 });

    let raw = encode_raw(FEATURE_RAW, 1_670_492_819.0, &SENSOR, 0, [0; 3], [0; 3]);
    let mut ragged = raw.repeat(2);
    ragged.pop();
    let err = decode_err(&ragged);
    assert_eq!(err, DecodeError::WrongLength { feature_type: 18, expected: 70, actual: 139 });
    assert_eq!(err.to_string(), "payload of feature type 18 is 139 bytes, expected a positive multiple of 70");
}

#[test]
fn raw_batch_with_a_foreign_record_is_rejected_whole() {
    let mut payload = encode_raw(FEATURE_RAW, 1_670_492_819.0, &SENSOR, 0, [0; 3], [0; 3]).to_vec();
    payload.extend(encode_ten_second(1_670_492_819.0, &SENSOR, 0, [0; 3], [0; 3]));
    let err = decode_err(&payload);
    assert_eq!(err, DecodeError::BatchTypeMismatch { record: 1, expected: 18, found: 16 });
    assert_eq!(err.to_string(), "record 1 of a raw batch has feature type 16, expected 18");
}

#[test]
fn bad_binary_timestamps_are_typed_errors_and_nothing_is_appended() {
    let good = encode_raw(FEATURE_RAW, 1_670_492_819.0, &SENSOR, 0, [0; 3], [0; 3]);
    for (ts, expected) in [
        (f64::NAN, DecodeError::NotFinite { field: "timestamp" }),
        (f64::INFINITY, DecodeError::NotFinite { field: "timestamp" }),
        (0.0, DecodeError::BadTimestamp(0.0)),
        (1_670_492_819_000.0, DecodeError::BadTimestamp(1_670_492_819_000.0)),
        (4_102_444_800.0, DecodeError::BadTimestamp(4_102_444_800.0)),
    ] {
        // The bad record last: earlier good records must be rolled back.
        let mut payload = good.repeat(3);
        payload.extend(encode_raw(FEATURE_RAW, ts, &SENSOR, 0, [0; 3], [0; 3]));
        assert_eq!(decode_err(&payload), expected, "{ts}");
    }
    assert_eq!(decode_err(&encode_ten_second(f64::NAN, &SENSOR, 0, [0; 3], [0; 3])).kind(), "not_finite");
    assert_eq!(DecodeError::BadTimestamp(0.0).kind(), "bad_timestamp");
    assert_eq!(DecodeError::BadTimestamp(12.5).to_string(), "timestamp 12.5 s is outside 2000-01-01..2100-01-01");
}

#[test]
fn empty_unknown_and_whitespace_payloads() {
    assert_eq!(decode_err(b""), DecodeError::Empty);
    assert_eq!(decode_err(b" \n\t"), DecodeError::Empty);
    let err = decode_err(&[7, 1, 2]);
    assert_eq!(err, DecodeError::UnknownType(7));
    assert_eq!(err.kind(), "unknown_type");
    assert!(err.to_string().contains("unknown feature type 7"), "{err}");
    assert_eq!(decode_err(b"  hello"), DecodeError::UnknownType(b' '));
}

#[test]
fn config_validation_rejects_ambiguous_settings() {
    assert_eq!(DecoderConfig::default().validate(), Ok(()));
    for t in [16, 17, b'{', b'[', b' ', b'\n'] {
        let c = DecoderConfig { raw_feature_type: t, ..DecoderConfig::default() };
        assert_eq!(c.validate(), Err(ConfigError::RawTypeCollides(t)));
    }
    let mut c = DecoderConfig::default();
    c.json.sensor_key = "p_l1".into();
    assert_eq!(c.validate(), Err(ConfigError::KeyCollides("p_l1".into())));
}

#[test]
fn config_round_trips_through_serde_and_fills_defaults() {
    let c: DecoderConfig =
        serde_json::from_str(r#"{"raw_feature_type": 20, "json": {"ts_unit": "millis", "fields": {"P1": "p_l1"}}}"#)
            .unwrap();
    assert_eq!(c.raw_feature_type, 20);
    assert_eq!(c.json.ts_key, "ts");
    assert_eq!(c.json.ts_unit, TsUnit::Millis);
    assert_eq!(c.json.fields.len(), 1);
    assert_eq!(c.json.fields["P1"], Field::PL1);
    let back: DecoderConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
    let unknown = serde_json::from_str::<DecoderConfig>(r#"{"raw_type": 20}"#);
    assert!(unknown.is_err());
    let bad_field = serde_json::from_str::<JsonFormat>(r#"{"fields": {"x": "p_l9"}}"#).unwrap_err();
    assert!(bad_field.to_string().contains("p_l9"), "{bad_field}");
    assert_eq!(DecoderConfig::default().json.fields.len(), crate::FIELD_COUNT);
}

/// Tiny xorshift64*: deterministic random bytes without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn random_and_truncated_payloads_never_panic() {
    let decoder = Decoder::new(DecoderConfig::default());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::new();
    let seeds: Vec<Vec<u8>> = vec![
        encode_raw(FEATURE_RAW, 1_670_492_819.0, &SENSOR, 0, [1, 2, 3], [4, 5, 6]).repeat(3),
        encode_ten_second(1_670_492_819.0, &SENSOR, 0, [1, 2, 3], [4, 5, 6]).to_vec(),
        encode_one_minute(1_670_492_819.0, &SENSOR, 0, [[1; 7]; 3], [1; 3]).to_vec(),
        br#"[{"ts": 1670492819.5, "sensor": "a", "p_l1": 1.5, "q_l2": null, "x": [1, {"y": 2}]}]"#.to_vec(),
        br#"{"ts": "2022-12-08T09:46:59.5Z", "sensor": 7, "v_l1": 230}"#.to_vec(),
    ];
    for seed in &seeds {
        // Every truncation of a valid payload.
        for len in 0..=seed.len() {
            let _ = decoder.decode(&seed[..len], &mut out);
        }
    }
    for _ in 0..200_000 {
        let seed = &seeds[(rng.next() % seeds.len() as u64) as usize];
        let mut bytes = seed.clone();
        // Flip a few bytes, sometimes truncate, sometimes pure noise.
        match rng.next() % 3 {
            0 => {
                for _ in 0..1 + rng.next() % 4 {
                    let i = (rng.next() % bytes.len() as u64) as usize;
                    bytes[i] = rng.next() as u8;
                }
            }
            1 => bytes.truncate((rng.next() % (bytes.len() as u64 + 1)) as usize),
            _ => {
                let len = (rng.next() % 300) as usize;
                bytes = (0..len).map(|_| rng.next() as u8).collect();
                if let Some(b) = bytes.first_mut() {
                    *b = [16, 17, 18, b'{', b'['][(rng.next() % 5) as usize];
                }
            }
        }
        let before = out.len();
        match decoder.decode(&bytes, &mut out) {
            Ok(n) => assert_eq!(out.len(), before + n),
            Err(_) => assert_eq!(out.len(), before),
        }
        out.clear();
    }
}

#[test]
fn a_payload_over_the_size_limit_is_rejected_before_it_is_read() {
    let config = DecoderConfig { max_payload_bytes: 2 * RAW_RECORD_LEN, ..DecoderConfig::default() };
    let three = [encode_raw(FEATURE_RAW, 1_700_000_000.0, &SENSOR, 0, [1; 3], [0; 3]); 3].concat();
    let mut out = Vec::new();
    let err = Decoder::new(config.clone()).decode(&three, &mut out).unwrap_err();
    assert_eq!(err, DecodeError::TooLarge { bytes: 210, max: 140 });
    assert_eq!(err.kind(), "too_large");
    assert_eq!(Decoder::new(config).decode(&three[..140], &mut out), Ok(2));
    // The default leaves room for any single meter message.
    assert!(DecoderConfig::default().max_payload_bytes >= ONE_MINUTE_LEN);
}

#[test]
fn a_json_array_of_a_million_readings_stops_at_the_limit_with_memory_bounded() {
    let one = r#"{"ts":1700000000,"sensor":"s","p_l1":1},"#;
    let mut payload = String::with_capacity(one.len() * 1_000_000 + 2);
    payload.push('[');
    for _ in 0..1_000_000 {
        payload.push_str(one);
    }
    payload.pop();
    payload.push(']');
    let config = DecoderConfig { max_payload_bytes: usize::MAX, ..DecoderConfig::default() };
    let mut out = Vec::new();
    let err = Decoder::new(config.clone()).decode(payload.as_bytes(), &mut out).unwrap_err();
    assert_eq!(err, DecodeError::TooManyReadings { max: DEFAULT_MAX_READINGS_PER_MESSAGE });
    assert!(out.is_empty(), "all or nothing");
    // Reading stopped at the limit: out never held more than limit + 1.
    assert!(out.capacity() <= 2 * (DEFAULT_MAX_READINGS_PER_MESSAGE + 1), "capacity {}", out.capacity());
    // Raw batches are refused from their length alone.
    let raw = vec![FEATURE_RAW; RAW_RECORD_LEN * (DEFAULT_MAX_READINGS_PER_MESSAGE + 1)];
    let err = Decoder::new(config.clone()).decode(&raw, &mut out).unwrap_err();
    assert_eq!(err, DecodeError::TooManyReadings { max: DEFAULT_MAX_READINGS_PER_MESSAGE });
    // And the default size limit refuses the million-reading array first.
    let err = Decoder::new(DecoderConfig::default()).decode(payload.as_bytes(), &mut out).unwrap_err();
    assert_eq!(err.kind(), "too_large");
}

#[test]
fn limits_that_cannot_work_are_refused() {
    let c = DecoderConfig { max_payload_bytes: 10, ..DecoderConfig::default() };
    assert_eq!(c.validate(), Err(ConfigError::TooSmall { key: "max_payload_bytes", min: ONE_MINUTE_LEN }));
    let c = DecoderConfig { max_readings_per_message: 0, ..DecoderConfig::default() };
    assert!(c.validate().unwrap_err().to_string().contains("max_readings_per_message"));
}
