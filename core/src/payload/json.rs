//! JSON payloads: `{"ts": ..., "sensor": ..., "p_l1": ..., ...}` or an array
//! of such objects, for meters (or gateways) that do not speak the Clemap
//! binary format. Which key means what is configurable ([`JsonFormat`]).
//!
//! The payload is walked once with serde visitors straight into [`Reading`]s:
//! keys are matched against the config as borrowed strings and unknown keys
//! are skipped without being built, so a reading costs no allocation beyond
//! its sensor id. Errors that are ours rather than JSON syntax (a missing key,
//! a bad timestamp) are carried out of the walk in a side slot so they keep
//! their type.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{DecodeError, rfc3339, ts_ms_from_millis, ts_ms_from_secs};
use crate::reading::{Field, Reading, SensorId, Source};

/// Unit of numeric JSON timestamps. Strings are always RFC 3339.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TsUnit {
    /// Unix seconds, fractions allowed (the Clemap convention).
    #[default]
    Seconds,
    /// Unix milliseconds.
    Millis,
}

/// Which JSON keys hold the timestamp, the sensor id and each field.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JsonFormat {
    pub ts_key: String,
    pub sensor_key: String,
    pub ts_unit: TsUnit,
    /// JSON key -> field. Keys not in the map are ignored.
    pub fields: BTreeMap<String, Field>,
}

impl Default for JsonFormat {
    fn default() -> Self {
        JsonFormat {
            ts_key: "ts".into(),
            sensor_key: "sensor".into(),
            ts_unit: TsUnit::Seconds,
            fields: Field::ALL.iter().map(|f| (f.name().to_owned(), *f)).collect(),
        }
    }
}

/// Decode one object or an array of at most `max_readings` objects; an
/// array stops being read at the first reading over the limit.
pub(super) fn decode(
    format: &JsonFormat,
    max_readings: usize,
    payload: &[u8],
    out: &mut Vec<Reading>,
) -> Result<(), DecodeError> {
    let mut failure = None;
    let mut de = serde_json::Deserializer::from_slice(payload);
    let walked = Payload { format, max_readings, start: out.len(), out, failure: &mut failure }
        .deserialize(&mut de)
        .and_then(|()| de.end());
    match (walked, failure) {
        (_, Some(ours)) => Err(ours),
        (Ok(()), None) => Ok(()),
        (Err(e), None) => Err(DecodeError::Json(format!("{e} in {}", snippet(payload)))),
    }
}

/// The start of the payload, for error messages: enough to recognise the
/// sender, never a whole batch in a log line.
fn snippet(payload: &[u8]) -> String {
    const MAX: usize = 80;
    let text = String::from_utf8_lossy(payload.get(..MAX).unwrap_or(payload));
    let dots = if payload.len() > MAX { "..." } else { "" };
    format!("`{}{dots}`", text.trim())
}

/// The whole payload: one object or an array of objects.
struct Payload<'a> {
    format: &'a JsonFormat,
    /// Most readings this payload may add to `out`, which held `start`.
    max_readings: usize,
    start: usize,
    out: &'a mut Vec<Reading>,
    failure: &'a mut Option<DecodeError>,
}

impl<'de> DeserializeSeed<'de> for Payload<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Payload<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a reading object or an array of reading objects")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        Object { format: self.format, out: self.out, failure: self.failure }.visit_map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (format, out, failure) = (self.format, self.out, self.failure);
        while seq.next_element_seed(Object { format, out: &mut *out, failure: &mut *failure })?.is_some() {
            if out.len() - self.start > self.max_readings {
                *failure = Some(DecodeError::TooManyReadings { max: self.max_readings });
                return Err(de::Error::custom("too many readings"));
            }
        }
        Ok(())
    }
}

/// One reading object; pushes the reading on success.
struct Object<'a> {
    format: &'a JsonFormat,
    out: &'a mut Vec<Reading>,
    failure: &'a mut Option<DecodeError>,
}

impl<'de> DeserializeSeed<'de> for Object<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Object<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a reading object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let format = self.format;
        let mut ts = None;
        let mut sensor = None;
        // Sensor and time are filled in at the end; an empty String does not allocate.
        let mut reading = Reading::new(SensorId::new(String::new()), Source::Raw, 0);
        let mut fail = |e: DecodeError| -> A::Error {
            *self.failure = Some(e);
            de::Error::custom("rejected reading")
        };
        while let Some(key) = map.next_key_seed(KeySeed(format))? {
            match key {
                Key::Ts => ts = Some(map.next_value_seed(TsSeed(&format.ts_key))?),
                Key::Sensor => sensor = Some(map.next_value_seed(SensorSeed(&format.sensor_key))?),
                Key::Field(field, name) => match map.next_value_seed(NumSeed(name))? {
                    Some(v) if v.is_finite() => reading.set(field, v),
                    Some(_) => {
                        return Err(fail(DecodeError::NotFinite { field: field.name() }));
                    }
                    // null: the sender has no value for this field right now.
                    None => {}
                },
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let Some(ts) = ts else {
            return Err(fail(DecodeError::MissingKey(format.ts_key.clone())));
        };
        let Some(sensor) = sensor else {
            return Err(fail(DecodeError::MissingKey(format.sensor_key.clone())));
        };
        let ts_ms = match ts {
            Ts::Number(v) => match format.ts_unit {
                TsUnit::Seconds => ts_ms_from_secs(v),
                TsUnit::Millis => ts_ms_from_millis(v),
            },
            Ts::Text(Ok(ms)) => ts_ms_from_millis(ms as f64),
            Ts::Text(Err(text)) => Err(DecodeError::BadTimestampText(text)),
        };
        reading.ts_ms = ts_ms.map_err(&mut fail)?;
        if reading.iter().next().is_none() {
            return Err(fail(DecodeError::NoFields(sensor.as_str().to_owned())));
        }
        reading.sensor = sensor;
        self.out.push(reading);
        Ok(())
    }
}

/// What a key means under the config. `Field` carries the config's own copy
/// of the key for error messages.
enum Key<'a> {
    Ts,
    Sensor,
    Field(Field, &'a str),
    Other,
}

struct KeySeed<'a>(&'a JsonFormat);

impl<'de, 'a> DeserializeSeed<'de> for KeySeed<'a> {
    type Value = Key<'a>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key<'a>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'a> Visitor<'_> for KeySeed<'a> {
    type Value = Key<'a>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'a>, E> {
        let format = self.0;
        Ok(if s == format.ts_key {
            Key::Ts
        } else if s == format.sensor_key {
            Key::Sensor
        } else if let Some((name, field)) = format.fields.get_key_value(s) {
            Key::Field(*field, name)
        } else {
            Key::Other
        })
    }
}

enum Ts {
    Number(f64),
    /// An RFC 3339 string: its time in ms, or the text that did not parse.
    Text(Result<i64, String>),
}

struct TsSeed<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for TsSeed<'_> {
    type Value = Ts;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Ts, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for TsSeed<'_> {
    type Value = Ts;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a number or an RFC 3339 string under key {:?}", self.0)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Ts, E> {
        Ok(Ts::Number(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ts, E> {
        Ok(Ts::Number(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ts, E> {
        Ok(Ts::Number(v as f64))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Ts, E> {
        Ok(Ts::Text(rfc3339::parse_ms(s).ok_or_else(|| s.to_owned())))
    }
}

struct SensorSeed<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for SensorSeed<'_> {
    type Value = SensorId;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<SensorId, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for SensorSeed<'_> {
    type Value = SensorId;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a non-empty string or an integer sensor id under key {:?}", self.0)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<SensorId, E> {
        // An empty id cannot be an InfluxDB tag value, and cannot tell meters apart.
        if s.is_empty() {
            return Err(E::invalid_value(de::Unexpected::Str(s), &self));
        }
        Ok(SensorId::new(s))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<SensorId, E> {
        Ok(SensorId::new(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<SensorId, E> {
        Ok(SensorId::new(v.to_string()))
    }
}

/// A field's value: a number, or `None` for `null`.
struct NumSeed<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for NumSeed<'_> {
    type Value = Option<f64>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<f64>, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for NumSeed<'_> {
    type Value = Option<f64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a number or null under key {:?}", self.0)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Option<f64>, E> {
        Ok(Some(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<f64>, E> {
        Ok(Some(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<f64>, E> {
        Ok(Some(v as f64))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<f64>, E> {
        Ok(None)
    }
}
