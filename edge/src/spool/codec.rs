//! The journal's record format: a batch of raw MQTT payloads, each as a
//! little-endian u32 length and the bytes. Kept raw so a replay decodes
//! exactly what was acknowledged, with the same decoder and the same errors.

/// Encode payloads as one journal record.
pub fn encode_journal_batch<'a>(payloads: impl IntoIterator<Item = &'a [u8]>, out: &mut Vec<u8>) {
    for payload in payloads {
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(payload);
    }
}

/// The payloads of one journal record. A truncated tail (impossible after a
/// committed transaction, but checked anyway) ends the iteration.
pub fn decode_journal_batch(record: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = record;
    std::iter::from_fn(move || {
        let len_bytes: [u8; 4] = rest.get(..4)?.try_into().ok()?;
        let len = u32::from_le_bytes(len_bytes) as usize;
        let payload = rest.get(4..4 + len)?;
        rest = &rest[4 + len..];
        Some(payload)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_including_empty_payloads() {
        let payloads: Vec<&[u8]> = vec![b"abc", b"", &[0u8; 70]];
        let mut record = Vec::new();
        encode_journal_batch(payloads.iter().copied(), &mut record);
        let back: Vec<&[u8]> = decode_journal_batch(&record).collect();
        assert_eq!(back, payloads);
    }

    #[test]
    fn truncated_record_stops_without_panic() {
        let mut record = Vec::new();
        encode_journal_batch([&b"abcdef"[..]], &mut record);
        record.truncate(7);
        assert_eq!(decode_journal_batch(&record).count(), 0);
    }
}
