//! Artifacts (SPEC §2, §3): the digest that names an artifact's content, the syntax of bucket and
//! key names, and the artifact reference a fact carries in `object_json` when its envelope sets
//! `object_media_type`.
//!
//! Parsing is the validation: [`ArtifactRef::parse`] and `ObjectDigest::from_str` either return a
//! value whose every field is well-formed or an [`ArtifactError`] saying which field is wrong.

use std::{fmt, str::FromStr};

use bincode::{Decode, Encode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// The only digest algorithm, as written in front of the hex digits.
pub const DIGEST_PREFIX: &str = "sha256:";
/// Longest bucket name, in bytes.
pub const MAX_BUCKET_BYTES: usize = 63;
/// Longest object key, in bytes (as S3).
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest media type or file name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// Why an artifact name, digest or reference is not acceptable; maps onto `INVALID_ARGUMENT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArtifactError {
    #[error("bucket {0:?} is not a valid bucket name ([a-z0-9][a-z0-9.-]{{0,62}})")]
    Bucket(String),
    #[error("key {0:?} must be 1..={MAX_KEY_BYTES} bytes of text without control characters")]
    Key(String),
    #[error("digest {0:?} is not \"sha256:\" followed by 64 lowercase hex digits")]
    Digest(String),
    #[error("media_type {0:?} must be type/subtype in 3..={MAX_NAME_BYTES} printable ASCII characters")]
    MediaType(String),
    #[error("file_name {0:?} must be 1..={MAX_NAME_BYTES} bytes without '/', '\\' or control characters")]
    FileName(String),
    #[error("object_json is not an artifact reference {{bucket, key, digest, size, media_type, file_name?}}: {0}")]
    NotAReference(String),
}

/// The sha256 of an artifact's bytes; rendered `sha256:<64 lowercase hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub struct ObjectDigest(pub [u8; 32]);

impl ObjectDigest {
    /// The digest of `bytes` held in memory (small artifacts, tests).
    pub fn of(bytes: &[u8]) -> Self {
        let mut hasher = ObjectHasher::default();
        hasher.update(bytes);
        hasher.finish()
    }
}

impl fmt::Display for ObjectDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(DIGEST_PREFIX)?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for ObjectDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for ObjectDigest {
    type Err = ArtifactError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ArtifactError::Digest(text.chars().take(80).collect());
        let hex = text.strip_prefix(DIGEST_PREFIX).ok_or_else(error)?.as_bytes();
        if hex.len() != 64 {
            return Err(error());
        }
        let mut digest = [0u8; 32];
        for (byte, pair) in digest.iter_mut().zip(hex.chunks_exact(2)) {
            *byte = (nibble(pair[0]).ok_or_else(error)? << 4) | nibble(pair[1]).ok_or_else(error)?;
        }
        Ok(Self(digest))
    }
}

/// Lowercase hex only, so every digest has exactly one spelling.
fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl Serialize for ObjectDigest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ObjectDigest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Computes an [`ObjectDigest`] incrementally while an artifact streams through.
#[derive(Debug, Clone, Default)]
pub struct ObjectHasher(Sha256);

impl ObjectHasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> ObjectDigest {
        ObjectDigest(self.0.finalize().into())
    }
}

/// A sink for `std::io::copy`: what is written is hashed.
impl std::io::Write for ObjectHasher {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bucket names: `[a-z0-9][a-z0-9.-]{0,62}`. They never contain `0x00`, which storage uses as a
/// separator, and are safe as a metric label value.
pub fn check_bucket(bucket: &str) -> Result<(), ArtifactError> {
    let body_ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'.';
    let ok = match bucket.as_bytes().split_first() {
        Some((first, rest)) => {
            (first.is_ascii_lowercase() || first.is_ascii_digit())
                && rest.len() < MAX_BUCKET_BYTES
                && rest.iter().all(body_ok)
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ArtifactError::Bucket(bucket.chars().take(80).collect()))
    }
}

/// Keys: 1..=1024 bytes of text without control characters (so never `0x00`).
pub fn check_key(key: &str) -> Result<(), ArtifactError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES || key.chars().any(char::is_control) {
        return Err(ArtifactError::Key(key.chars().take(80).collect()));
    }
    Ok(())
}

/// Media types: `type/subtype` (parameters allowed) in printable ASCII.
pub fn check_media_type(media_type: &str) -> Result<(), ArtifactError> {
    let printable = media_type.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    let shaped = media_type
        .split_once('/')
        .is_some_and(|(kind, sub)| !kind.is_empty() && !sub.is_empty());
    if printable && shaped && media_type.len() <= MAX_NAME_BYTES {
        Ok(())
    } else {
        Err(ArtifactError::MediaType(media_type.chars().take(80).collect()))
    }
}

/// A suggested file name for consumers: a single path component, never a path.
pub fn check_file_name(name: &str) -> Result<(), ArtifactError> {
    let bad_char = |c: char| c == '/' || c == '\\' || c.is_control();
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(bad_char) || name == "." || name == ".." {
        return Err(ArtifactError::FileName(name.chars().take(80).collect()));
    }
    Ok(())
}

/// The artifact reference of SPEC §2, as held in `object_json` of a fact whose envelope sets
/// `object_media_type`. Unknown fields are refused so a misspelt `file_name` is not silently lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactRef {
    pub bucket: String,
    pub key: String,
    pub digest: ObjectDigest,
    pub size: u64,
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
}

impl ArtifactRef {
    /// Parses and checks `object_json`.
    pub fn parse(object_json: &str) -> Result<Self, ArtifactError> {
        let reference: Self =
            serde_json::from_str(object_json).map_err(|e| ArtifactError::NotAReference(e.to_string()))?;
        reference.validate()?;
        Ok(reference)
    }

    /// Checks the fields serde cannot: bucket, key, media type and file name syntax.
    pub fn validate(&self) -> Result<(), ArtifactError> {
        check_bucket(&self.bucket)?;
        check_key(&self.key)?;
        check_media_type(&self.media_type)?;
        self.file_name.as_deref().map_or(Ok(()), check_file_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn digests_render_and_parse_in_one_canonical_spelling() {
        let digest = ObjectDigest::of(b"hello");
        assert_eq!(digest.to_string(), HELLO);
        assert_eq!(HELLO.parse::<ObjectDigest>(), Ok(digest));
        for bad in [
            "",
            "sha256:",
            &HELLO.to_uppercase(),
            &HELLO.replace("sha256:", "sha512:"),
            &HELLO[..HELLO.len() - 1],
            &format!("{HELLO}0"),
            &HELLO.replace('c', "g"),
        ] {
            assert!(bad.parse::<ObjectDigest>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn incremental_hashing_equals_one_shot() {
        let mut hasher = ObjectHasher::default();
        hasher.update(b"hel");
        hasher.update(b"lo");
        assert_eq!(hasher.finish(), ObjectDigest::of(b"hello"));
    }

    #[test]
    fn names_follow_their_syntax() {
        for ok in ["a", "coa", "batch-records.2024", &"b".repeat(63)] {
            assert!(check_bucket(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", ".a", "A", "a_b", "a/b", &"b".repeat(64)] {
            assert!(check_bucket(bad).is_err(), "{bad}");
        }
        assert!(check_key("reports/2024/batch 42.pdf").is_ok());
        for bad in ["", "a\0b", "a\nb", &"k".repeat(1025)] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_media_type("application/pdf").is_ok());
        assert!(check_media_type("text/plain; charset=utf-8").is_ok());
        for bad in ["", "pdf", "/pdf", "application/", "text/plain\n"] {
            assert!(check_media_type(bad).is_err(), "{bad:?}");
        }
        assert!(check_file_name("coa 42.pdf").is_ok());
        for bad in ["", ".", "..", "../etc/passwd", "a\\b", "a\0"] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_reference_parses_with_every_field_checked() {
        let json = format!(
            r#"{{"bucket":"coa","key":"batch/42.pdf","digest":"{HELLO}","size":5,"media_type":"application/pdf"}}"#
        );
        let reference = ArtifactRef::parse(&json).expect("valid");
        assert_eq!(reference.digest, ObjectDigest::of(b"hello"));
        assert_eq!(serde_json::to_string(&reference).expect("render"), json);
        let broken = [
            json.replace("\"coa\"", "\"COA\""),
            json.replace(HELLO, "sha256:00"),
            json.replace(",\"size\":5", ""),
            json.replace("application/pdf", "pdf"),
            json.replace('}', r#","file_name":"../x"}"#),
            json.replace('}', r#","filename":"x.pdf"}"#),
            "{\"x\":1}".to_owned(),
            "[1]".to_owned(),
        ];
        for bad in broken {
            assert!(ArtifactRef::parse(&bad).is_err(), "{bad}");
        }
    }
}
