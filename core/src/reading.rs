//! A reading: one sensor's measured values at one instant, whatever payload
//! format it arrived in. Decoders (`payload`) produce readings; windows
//! (`window`) fold them into per-minute statistics.
//!
//! The set of quantities is closed and known in advance ([`Field`]), so a
//! reading is a fixed array plus a presence mask: no allocation per reading,
//! and a field's name is fixed forever (InfluxDB field types never change).

use std::fmt;

/// Every quantity a meter can report, per phase. The names are the ones the
/// Clemap meter uses (`../shared/clemap/mqtt_msg_format.json`) and the ones
/// written to InfluxDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
#[rustfmt::skip] // one row per quantity, three phases per row
pub enum Field {
    PL1, PL2, PL3,
    QL1, QL2, QL3,
    SL1, SL2, SL3,
    VL1, VL2, VL3,
    IL1, IL2, IL3,
    PfL1, PfL2, PfL3,
    PhiL1, PhiL2, PhiL3,
    AvgEnergyL1, AvgEnergyL2, AvgEnergyL3,
}

impl Field {
    /// All fields, in index order.
    #[rustfmt::skip]
    pub const ALL: [Field; FIELD_COUNT] = [
        Field::PL1, Field::PL2, Field::PL3,
        Field::QL1, Field::QL2, Field::QL3,
        Field::SL1, Field::SL2, Field::SL3,
        Field::VL1, Field::VL2, Field::VL3,
        Field::IL1, Field::IL2, Field::IL3,
        Field::PfL1, Field::PfL2, Field::PfL3,
        Field::PhiL1, Field::PhiL2, Field::PhiL3,
        Field::AvgEnergyL1, Field::AvgEnergyL2, Field::AvgEnergyL3,
    ];

    /// Index into a reading's value array.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The field's name on the wire and in InfluxDB, e.g. `p_l1`.
    #[rustfmt::skip]
    pub const fn name(self) -> &'static str {
        match self {
            Field::PL1 => "p_l1", Field::PL2 => "p_l2", Field::PL3 => "p_l3",
            Field::QL1 => "q_l1", Field::QL2 => "q_l2", Field::QL3 => "q_l3",
            Field::SL1 => "s_l1", Field::SL2 => "s_l2", Field::SL3 => "s_l3",
            Field::VL1 => "v_l1", Field::VL2 => "v_l2", Field::VL3 => "v_l3",
            Field::IL1 => "i_l1", Field::IL2 => "i_l2", Field::IL3 => "i_l3",
            Field::PfL1 => "pf_l1", Field::PfL2 => "pf_l2", Field::PfL3 => "pf_l3",
            Field::PhiL1 => "phi_l1", Field::PhiL2 => "phi_l2", Field::PhiL3 => "phi_l3",
            Field::AvgEnergyL1 => "avg_energy_l1",
            Field::AvgEnergyL2 => "avg_energy_l2",
            Field::AvgEnergyL3 => "avg_energy_l3",
        }
    }

    /// The field with this name, if any.
    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.iter().copied().find(|f| f.name() == name)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// Configs name fields by their wire name (`p_l1`), the same string InfluxDB
// sees, so a config file never depends on the Rust variant names.
impl serde::Serialize for Field {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Field {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Field::from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format_args!("unknown field name {name:?}, expected one like \"p_l1\""))
        })
    }
}

/// Number of [`Field`]s.
pub const FIELD_COUNT: usize = 24;

/// Quantities summed over the three phases; a window reports their statistics
/// as `p_sum`, `q_sum`, `s_sum` (the per-reading sum over the phases present).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PhaseSum {
    P,
    Q,
    S,
}

impl PhaseSum {
    pub const ALL: [PhaseSum; 3] = [PhaseSum::P, PhaseSum::Q, PhaseSum::S];

    pub const fn name(self) -> &'static str {
        match self {
            PhaseSum::P => "p_sum",
            PhaseSum::Q => "q_sum",
            PhaseSum::S => "s_sum",
        }
    }

    /// The per-phase fields this sum adds up.
    pub const fn phases(self) -> [Field; 3] {
        match self {
            PhaseSum::P => [Field::PL1, Field::PL2, Field::PL3],
            PhaseSum::Q => [Field::QL1, Field::QL2, Field::QL3],
            PhaseSum::S => [Field::SL1, Field::SL2, Field::SL3],
        }
    }
}

/// A sensor's identity: the Clemap meter's 12-byte MongoDB ObjectId, shown as
/// 24 lowercase hex characters, or any other meter's id from its JSON payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SensorId(String);

impl SensorId {
    /// A sensor id from a free-form string (JSON meters).
    pub fn new(id: impl Into<String>) -> Self {
        SensorId(id.into())
    }

    /// A sensor id from a Clemap ObjectId's 12 raw bytes.
    pub fn from_object_id(bytes: &[u8; 12]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(24);
        for b in bytes {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 0xf) as usize] as char);
        }
        SensorId(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SensorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which kind of message a reading came from. Windows are kept apart per kind,
/// so a meter that sends both ten-second and one-minute data does not mix them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// A raw 12 Hz reading (binary type 18, or JSON).
    Raw,
    /// The meter's own ten-second means (binary type 16).
    TenSecond,
    /// The meter's own one-minute means (binary type 17).
    OneMinute,
}

impl Source {
    /// Every source, in order.
    pub const ALL: [Source; 3] = [Source::Raw, Source::TenSecond, Source::OneMinute];

    /// The value of the `source` tag in InfluxDB.
    pub const fn name(self) -> &'static str {
        match self {
            Source::Raw => "raw",
            Source::TenSecond => "ten_second",
            Source::OneMinute => "one_minute",
        }
    }

    /// The source with this name (`raw`, `ten_second`, `one_minute`), if any.
    pub fn from_name(name: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of [`Source::ALL`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown source {0:?}, expected one of raw, ten_second, one_minute")]
pub struct UnknownSource(pub String);

impl std::str::FromStr for Source {
    type Err = UnknownSource;

    fn from_str(s: &str) -> Result<Source, UnknownSource> {
        Source::from_name(s).ok_or_else(|| UnknownSource(s.to_string()))
    }
}

// Like `Field`: configs name sources by their tag value.
impl serde::Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Source {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// One sensor's values at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub sensor: SensorId,
    pub source: Source,
    /// Event time: the meter's timestamp, in milliseconds since the Unix epoch.
    pub ts_ms: i64,
    values: [f64; FIELD_COUNT],
    /// Bit `i` set when `values[i]` was present in the payload.
    present: u32,
}

impl Reading {
    /// A reading with no values yet.
    pub fn new(sensor: SensorId, source: Source, ts_ms: i64) -> Self {
        Reading { sensor, source, ts_ms, values: [0.0; FIELD_COUNT], present: 0 }
    }

    /// Set a field. Callers check finiteness first (decoders reject NaN).
    pub fn set(&mut self, field: Field, value: f64) {
        self.values[field.index()] = value;
        self.present |= 1 << field.index();
    }

    /// The field's value, if the payload had it.
    pub fn get(&self, field: Field) -> Option<f64> {
        if self.present & (1 << field.index()) != 0 { Some(self.values[field.index()]) } else { None }
    }

    /// The present fields and their values, in field order.
    pub fn iter(&self) -> impl Iterator<Item = (Field, f64)> + '_ {
        Field::ALL.iter().copied().filter(|f| self.present & (1 << f.index()) != 0).map(|f| (f, self.values[f.index()]))
    }

    /// Sum over the phases present, or `None` when no phase is present.
    pub fn phase_sum(&self, sum: PhaseSum) -> Option<f64> {
        let mut total = None;
        for f in sum.phases() {
            if let Some(v) = self.get(f) {
                *total.get_or_insert(0.0) += v;
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_round_trip_and_indices_are_dense() {
        for (i, f) in Field::ALL.iter().enumerate() {
            assert_eq!(f.index(), i);
            assert_eq!(Field::from_name(f.name()), Some(*f));
        }
    }

    #[test]
    fn sources_parse_from_their_names_and_nothing_else() {
        for source in Source::ALL {
            assert_eq!(source.name().parse::<Source>(), Ok(source));
            assert_eq!(serde_json::from_str::<Source>(&format!("\"{source}\"")).unwrap(), source);
        }
        assert_eq!("minute".parse::<Source>(), Err(UnknownSource("minute".into())));
        assert!(serde_json::from_str::<Source>("\"minute\"").unwrap_err().to_string().contains("ten_second"));
    }

    #[test]
    fn object_id_is_24_lowercase_hex() {
        let id = SensorId::from_object_id(&[0x60, 0xa3, 0xae, 0xc3, 0xd2, 0xdd, 0x98, 0x49, 0xd6, 0x93, 0x59, 0x76]);
        assert_eq!(id.as_str(), "60a3aec3d2dd9849d6935976");
    }

    #[test]
    fn phase_sum_adds_present_phases_only() {
        let mut r = Reading::new(SensorId::new("s"), Source::Raw, 0);
        assert_eq!(r.phase_sum(PhaseSum::P), None);
        r.set(Field::PL1, 100.0);
        r.set(Field::PL3, 50.5);
        assert_eq!(r.phase_sum(PhaseSum::P), Some(150.5));
    }
}
