//! Frames: a `u32` big-endian body length followed by a bincode 2 body (SPEC §3).
//!
//! Decoding is bounded twice: the caller refuses a header announcing more than
//! `max_frame_bytes` before reading the body ([`body_len`]), and bincode's claim limit stops a
//! body from announcing collections larger than a small multiple of its own size, so a few
//! hostile bytes can never make the decoder allocate gigabytes. Bad input is an error, never a panic.

use bincode::{
    config::{self},
    enc::write::{SizeWriter, Writer},
    error::EncodeError,
    Decode, Encode,
};
use sha2::{Digest as _, Sha256};

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

/// How many bytes of in-memory collections a body may claim per byte of its own length.
/// In-memory structs are larger than their encoding; 16 leaves room for the smallest facts.
const CLAIM_RATIO: usize = 16;

/// The smallest claim budget, so tiny frames with a few strings always decode.
const MIN_CLAIM: usize = 1 << 16;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes is over the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("frame is truncated: expected {expected} bytes, got {got}")]
    Truncated { expected: usize, got: usize },
    #[error("frame body does not decode: {0}")]
    Decode(String),
    #[error("frame body has {0} trailing bytes")]
    TrailingBytes(usize),
    #[error("value does not encode: {0}")]
    Encode(String),
}

type WireConfig = config::Configuration<config::LittleEndian, config::Varint, config::NoLimit>;

/// Varint little-endian encoding; the claim limit is added per decode.
fn wire_config() -> WireConfig {
    config::standard()
}

/// The `message_id` of an encoded `Message`, read without decoding the rest: it is the first
/// field of the envelope, the message's first field, so the encoding starts with it (a test in
/// `tests/codec_props.rs` holds this layout in place). For audit lines of pages served as stored.
pub fn message_id_of(encoded_message: &[u8]) -> Result<&str, FrameError> {
    bincode::borrow_decode_from_slice::<&str, _>(encoded_message, wire_config())
        .map(|(id, _)| id)
        .map_err(|e| FrameError::Decode(e.to_string()))
}

/// The `to_zone` of an encoded `Message`, read without decoding the rest: the third field of the
/// envelope, after `message_id` and `from_zone` (held in place by the same test). For the pages
/// of a relay that holds some destinations (`FetchHeld`).
pub fn to_zone_of(encoded_message: &[u8]) -> Result<&str, FrameError> {
    bincode::borrow_decode_from_slice::<(&str, &str, &str), _>(encoded_message, wire_config())
        .map(|((_, _, to_zone), _)| to_zone)
        .map_err(|e| FrameError::Decode(e.to_string()))
}

/// Bytes `value` takes in the wire encoding (no header).
pub fn encoded_len<T: Encode>(value: &T) -> usize {
    let mut writer = SizeWriter::default();
    // A SizeWriter cannot fail; an encode error could only come from a broken Encode impl.
    match bincode::encode_into_writer(value, &mut writer, wire_config()) {
        Ok(()) => writer.bytes_written,
        Err(_) => usize::MAX,
    }
}

/// sha256 of `value`'s wire encoding, hashed as it is encoded (nothing is allocated).
pub fn digest_of<T: Encode>(value: &T) -> Result<[u8; 32], FrameError> {
    let mut hasher = HashWriter(Sha256::new());
    bincode::encode_into_writer(value, &mut hasher, wire_config()).map_err(|e| FrameError::Encode(e.to_string()))?;
    Ok(hasher.0.finalize().into())
}

struct HashWriter(Sha256);

impl Writer for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        self.0.update(bytes);
        Ok(())
    }
}

/// Appends one frame (header and body) for `value` to `out`.
pub fn encode_frame_into<T: Encode>(value: &T, out: &mut Vec<u8>, max_frame_bytes: usize) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    bincode::encode_into_std_write(value, out, wire_config()).map_err(|e| FrameError::Encode(e.to_string()))?;
    let len = out.len() - start - HEADER_LEN;
    if len > max_frame_bytes || u32::try_from(len).is_err() {
        out.truncate(start);
        return Err(FrameError::TooLarge {
            len,
            limit: max_frame_bytes,
        });
    }
    out[start..start + HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// One frame (header and body) for `value`.
pub fn encode_frame<T: Encode>(value: &T, max_frame_bytes: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    encode_frame_into(value, &mut out, max_frame_bytes)?;
    Ok(out)
}

/// The body length announced by a header, refused when over `max_frame_bytes`.
pub fn body_len(header: [u8; HEADER_LEN], max_frame_bytes: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > max_frame_bytes {
        return Err(FrameError::TooLarge {
            len,
            limit: max_frame_bytes,
        });
    }
    Ok(len)
}

/// Decodes a whole frame held in `bytes` (header and body, nothing after it).
pub fn decode_frame<T: Decode<()>>(bytes: &[u8], max_frame_bytes: usize) -> Result<T, FrameError> {
    let header: [u8; HEADER_LEN] =
        bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(FrameError::Truncated {
                expected: HEADER_LEN,
                got: bytes.len(),
            })?;
    let len = body_len(header, max_frame_bytes)?;
    let body = &bytes[HEADER_LEN..];
    match body.len().cmp(&len) {
        std::cmp::Ordering::Less => Err(FrameError::Truncated {
            expected: len,
            got: body.len(),
        }),
        std::cmp::Ordering::Greater => Err(FrameError::TrailingBytes(body.len() - len)),
        std::cmp::Ordering::Equal => decode_body(body),
    }
}

/// Decodes one body; every byte must be consumed.
pub fn decode_body<T: Decode<()>>(body: &[u8]) -> Result<T, FrameError> {
    let budget = body.len().saturating_mul(CLAIM_RATIO).max(MIN_CLAIM);
    macro_rules! tiers {
        ($($shift:literal),*) => {$(
            if budget <= (1usize << $shift) {
                return decode_with_limit::<T, { 1usize << $shift }>(body);
            }
        )*};
    }
    tiers!(16, 18, 20, 22, 24, 26, 28, 30, 32, 34);
    Err(FrameError::TooLarge {
        len: body.len(),
        limit: 1 << 30,
    })
}

fn decode_with_limit<T: Decode<()>, const LIMIT: usize>(body: &[u8]) -> Result<T, FrameError> {
    let cfg = wire_config().with_limit::<LIMIT>();
    let (value, used) = bincode::decode_from_slice(body, cfg).map_err(|e| FrameError::Decode(e.to_string()))?;
    if used != body.len() {
        return Err(FrameError::TrailingBytes(body.len() - used));
    }
    Ok(value)
}

/// Encodes a value for storage (no header); the same encoding as frame bodies.
pub fn encode_value<T: Encode>(value: &T) -> Result<Vec<u8>, FrameError> {
    bincode::encode_to_vec(value, wire_config()).map_err(|e| FrameError::Encode(e.to_string()))
}
