//! Batching readings into messages, as a gateway does: up to N readings of
//! one sensor per MQTT message (12 = one second of one sensor), their 70-byte
//! records concatenated. Pure; `publish` wraps the readings in [`Batches`].

use crate::generator::SimReading;

/// Groups readings into messages of up to `per_message` readings of one
/// sensor, as a gateway that batches does (12 = one second of one sensor).
/// A message is complete when its sensor has `per_message` readings waiting;
/// at the end, partial messages follow in sensor order of first appearance.
/// With `per_message == 1`, each reading is its own message, in input order.
#[derive(Debug)]
pub struct Batches<I> {
    readings: I,
    per_message: usize,
    /// Readings waiting per sensor, in order of first appearance.
    pending: Vec<([u8; 12], Vec<SimReading>)>,
    flushing: usize,
}

impl<I: Iterator<Item = SimReading>> Batches<I> {
    /// `per_message` of 0 is taken as 1.
    pub fn new(readings: I, per_message: usize) -> Self {
        Batches { readings, per_message: per_message.max(1), pending: Vec::new(), flushing: 0 }
    }
}

impl<I: Iterator<Item = SimReading>> Iterator for Batches<I> {
    type Item = Vec<SimReading>;

    fn next(&mut self) -> Option<Vec<SimReading>> {
        if self.per_message == 1 {
            return self.readings.next().map(|r| vec![r]);
        }
        for reading in self.readings.by_ref() {
            let slot = match self.pending.iter().position(|(id, _)| *id == reading.sensor) {
                Some(i) => i,
                None => {
                    self.pending.push((reading.sensor, Vec::with_capacity(self.per_message)));
                    self.pending.len() - 1
                }
            };
            let buf = &mut self.pending[slot].1;
            buf.push(reading);
            if buf.len() == self.per_message {
                return Some(std::mem::replace(buf, Vec::with_capacity(self.per_message)));
            }
        }
        while self.flushing < self.pending.len() {
            let buf = std::mem::take(&mut self.pending[self.flushing].1);
            self.flushing += 1;
            if !buf.is_empty() {
                return Some(buf);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(sensor: u8, tick: u32) -> SimReading {
        SimReading { sensor: [sensor; 12], ts_secs: tick as f64 / 12.0, p_milli: [0; 3], q_milli: [0; 3] }
    }

    /// `per_sensor` ticks of `sensors` sensors, interleaved in time order.
    fn stream(sensors: u8, per_sensor: u32) -> impl Iterator<Item = SimReading> {
        (0..per_sensor).flat_map(move |t| (0..sensors).map(move |s| reading(s, t)))
    }

    #[test]
    fn batches_group_one_sensor_per_message_and_flush_the_rest() {
        let messages: Vec<_> = Batches::new(stream(2, 30), 12).collect();
        // 30 readings per sensor: two full seconds each, then 6 left over each.
        let sizes: Vec<_> = messages.iter().map(Vec::len).collect();
        assert_eq!(sizes, [12, 12, 12, 12, 6, 6]);
        for m in &messages {
            assert!(m.iter().all(|r| r.sensor == m[0].sensor));
            assert!(m.windows(2).all(|w| w[0].ts_secs < w[1].ts_secs));
        }
        let all: usize = messages.iter().map(Vec::len).sum();
        assert_eq!(all, 60);
    }

    #[test]
    fn one_reading_per_message_keeps_the_input_order() {
        let messages: Vec<_> = Batches::new(stream(3, 2), 1).collect();
        let flat: Vec<_> = messages.into_iter().flatten().collect();
        assert_eq!(flat, stream(3, 2).collect::<Vec<_>>());
        assert_eq!(Batches::new(stream(3, 2), 0).count(), 6, "0 is taken as 1");
    }
}
