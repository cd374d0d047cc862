//! The bench message body: the send time (microseconds since the Unix epoch, little endian) in
//! the first 8 bytes, so the consumer in the other zone can measure end-to-end latency from the
//! message alone, then filler up to `--payload-bytes`.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes the timestamp takes; smaller payloads are padded up to it.
pub const STAMP_BYTES: usize = 8;

/// Microseconds since the Unix epoch, the clock both zones share on one machine.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX))
}

/// A body of `size` bytes (at least [`STAMP_BYTES`]) stamped with `sent_micros`.
pub fn encode(sent_micros: u64, size: usize) -> Bytes {
    let mut body = BytesMut::with_capacity(size.max(STAMP_BYTES));
    body.put_u64_le(sent_micros);
    body.resize(size.max(STAMP_BYTES), b'x');
    body.freeze()
}

/// The send time stamped by [`encode`], or `None` for a body too short to carry one.
pub fn sent_micros(body: &[u8]) -> Option<u64> {
    let stamp: [u8; STAMP_BYTES] = body.get(..STAMP_BYTES)?.try_into().ok()?;
    Some(u64::from_le_bytes(stamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_survives_a_round_trip_and_the_size_is_kept() {
        let body = encode(1_700_000_000_123_456, 256);
        assert_eq!(body.len(), 256);
        assert_eq!(sent_micros(&body), Some(1_700_000_000_123_456));
    }

    #[test]
    fn tiny_payloads_still_carry_the_stamp() {
        let body = encode(42, 3);
        assert_eq!(body.len(), STAMP_BYTES);
        assert_eq!(sent_micros(&body), Some(42));
    }

    #[test]
    fn a_short_body_has_no_stamp() {
        assert_eq!(sent_micros(b"short"), None);
    }
}
