//! Requests and responses of the boundary contract (SPEC §3). One request and one response
//! travel on each bidirectional QUIC stream.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::{model::Message, object::ObjectDigest, RpcError};

/// Everything a caller can ask of a node.
// One request lives per stream and is moved once into its handler; boxing the large variant
// would only add an allocation per append.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Request {
    Append(AppendRequest),
    Fetch(FetchRequest),
    Confirm(ConfirmRequest),
    // New variants go last: bincode variant indices are the wire format.
    PutObject(PutObjectRequest),
    GetObject(GetObjectRequest),
    AppendBatch(AppendBatchRequest),
    /// `AppendFacts` that stops at its first failed message (see [`AppendBatchRequest`]); its
    /// operation name is `append_facts` too.
    AppendInOrder(AppendBatchRequest),
    /// `GetObject` of the bytes from an offset on: a peer resuming a pull that broke off. Its
    /// operation name is `get_object` too. A node of an older version refuses it as malformed.
    GetObjectFrom(GetObjectFromRequest),
    /// `FetchFacts` of a relay whose store is full: a peer's page that leaves out the facts for
    /// the destination zones it holds. Its operation name is `fetch_facts` too. A node of an
    /// older version refuses it as malformed.
    FetchHeld(FetchHeldRequest),
}

impl Request {
    /// Every operation's name, as [`Request::operation`] gives it.
    pub const OPERATIONS: [&'static str; 6] = [
        "append_fact",
        "append_facts",
        "fetch_facts",
        "confirm_receipt",
        "put_object",
        "get_object",
    ];

    /// The operation's stable name, for metrics and audit logs.
    pub fn operation(&self) -> &'static str {
        match self {
            Self::Append(_) => "append_fact",
            Self::Fetch(_) | Self::FetchHeld(_) => "fetch_facts",
            Self::Confirm(_) => "confirm_receipt",
            Self::PutObject(_) => "put_object",
            Self::GetObject(_) | Self::GetObjectFrom(_) => "get_object",
            Self::AppendBatch(_) | Self::AppendInOrder(_) => "append_facts",
        }
    }

    /// How many facts the request asks to append (0 for the other operations).
    pub fn facts(&self) -> usize {
        match self {
            Self::Append(_) => 1,
            Self::AppendBatch(r) | Self::AppendInOrder(r) => r.messages.len(),
            _ => 0,
        }
    }
}

/// The answer to a [`Request`], or an error.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Response {
    Append(AppendResponse),
    Fetch(FetchResponse),
    Confirm(ConfirmResponse),
    Error(RpcError),
    /// The artifact is durable under its key.
    PutObject(ObjectMeta),
    /// Followed on the same stream by exactly `size` raw bytes of the artifact (the bytes from
    /// `offset` on, `size - offset` of them, after a [`Request::GetObjectFrom`]).
    GetObject(ObjectMeta),
    AppendBatch(AppendBatchResponse),
}

/// `AppendFact(message)`: durable append to the node's store buffer.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct AppendRequest {
    pub message: Message,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct AppendResponse {
    pub offset: u64,
    pub duplicate: bool,
}

/// The most messages one `AppendFacts` call may carry.
pub const MAX_APPEND_BATCH: usize = 1024;

/// `AppendFacts(messages)`: many `AppendFact`s in one call, for producers with a stream of facts.
///
/// As [`Request::AppendBatch`], each message is appended exactly as `AppendFact` would append it,
/// in the order given, and has its own outcome. As [`Request::AppendInOrder`], the call stops at
/// its first failed message: the messages before it have their outcomes, the failed one its
/// error, and the ones after it are neither stored nor answered (the answer is shorter than the
/// call), so what a call stores is always a prefix of it — what a producer that keeps order needs.
/// Either way the call is answered once every appended fact is durable (they share a group
/// commit). Between 1 and [`MAX_APPEND_BATCH`] messages, within `limits.max_frame_bytes`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct AppendBatchRequest {
    pub messages: Vec<Message>,
}

/// One outcome per message of an [`AppendBatchRequest`], in its order: the offset (and whether it
/// was a duplicate), or the error `AppendFact` would have returned for that message alone. An
/// in-order call's answer ends at its first error.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct AppendBatchResponse {
    pub results: Vec<Result<AppendResponse, RpcError>>,
}

/// What the facts of one [`AppendBatchResponse`] came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchTally {
    pub appended: usize,
    pub duplicates: usize,
    pub failed: usize,
    /// Index of the first failed fact, if any failed.
    pub first_failed: Option<usize>,
}

impl AppendBatchResponse {
    pub fn tally(&self) -> BatchTally {
        BatchTally::of(&self.results)
    }

    /// The error of the first failed fact.
    pub fn first_error(&self) -> Option<&RpcError> {
        self.results.iter().find_map(|r| r.as_ref().err())
    }
}

impl BatchTally {
    /// Counts the outcomes of appended facts.
    pub fn of(results: &[Result<AppendResponse, RpcError>]) -> Self {
        let mut tally = Self::default();
        for (i, result) in results.iter().enumerate() {
            match result {
                Ok(ack) if ack.duplicate => tally.duplicates += 1,
                Ok(_) => tally.appended += 1,
                Err(_) => {
                    tally.failed += 1;
                    tally.first_failed.get_or_insert(i);
                }
            }
        }
        tally
    }
}

/// `FetchFacts(consumer, limit, max_wait_ms, after?)`.
///
/// A local client reads the forward buffer under its durable consumer name; a peer node reads
/// the facts addressed to it from the store buffer (its consumer name is derived from its
/// certificate and the field is ignored).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct FetchRequest {
    pub consumer: String,
    pub limit: u32,
    pub max_wait_ms: u32,
    /// Read after this offset instead of the confirmed cursor (pipelining).
    pub after: Option<u64>,
}

/// A peer's `FetchFacts` that leaves out every fact whose `to_zone` is one of `held_zones`: the
/// destinations a relay whose store is full cannot pass on yet (their next hop's link is down).
/// The answer is a [`Response::Fetch`] complete up to its `high_offset` but for those facts, which
/// wait at the sender: the relay confirms no further than the first of them it met, and pulls
/// them, with everything after, once it takes them again (duplicates are dropped there).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct FetchHeldRequest {
    pub fetch: FetchRequest,
    pub held_zones: Vec<String>,
}

/// A page of facts, complete up to `high_offset`: every fact for this consumer with an offset in
/// `(after, high_offset]` is in `facts`. A reader may confirm `high_offset` once it has the page,
/// and a peer does, so its frontier moves past facts addressed to other zones.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct FetchResponse {
    pub facts: Vec<FetchedFact>,
    pub high_offset: u64,
}

/// A `FetchFacts` answer whose messages are still in the encoding they were stored in
/// ([`codec::encode_value`](crate::codec::encode_value) of a [`Message`]). It encodes byte for byte
/// as [`Response::Fetch`] of the same facts decoded would (a property test pins this), so a node
/// serves pages without decoding and re-encoding every message; receivers decode a [`Response`]
/// as usual. Only ever encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPage {
    pub facts: Vec<EncodedFact>,
    /// As [`FetchResponse::high_offset`].
    pub high_offset: u64,
}

/// A fact of an [`EncodedPage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFact {
    pub offset: u64,
    /// The message, encoded.
    pub message: Vec<u8>,
}

/// The variant index of [`Response::Fetch`] (bincode writes it as a `u32`).
const FETCH_TAG: u32 = 1;

impl Encode for EncodedPage {
    fn encode<E: bincode::enc::Encoder>(&self, encoder: &mut E) -> Result<(), bincode::error::EncodeError> {
        use bincode::enc::write::Writer;
        FETCH_TAG.encode(encoder)?;
        // Field by field as the derived encoding of `FetchResponse`: a sequence is its length as
        // a u64, then its items; a `FetchedFact` is its offset, then its message.
        (self.facts.len() as u64).encode(encoder)?;
        for fact in &self.facts {
            fact.offset.encode(encoder)?;
            encoder.writer().write(&fact.message)?;
        }
        self.high_offset.encode(encoder)
    }
}

/// One fact with its offset in the buffer it was read from.
/// Renders as `{"offset", "envelope", "fact"}` (the `fetch` output line).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct FetchedFact {
    pub offset: u64,
    #[serde(flatten)]
    pub message: Message,
}

/// `ConfirmReceipt(consumer, offset)`: the durable cursor becomes `max(cursor, offset)`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ConfirmRequest {
    pub consumer: String,
    pub offset: u64,
}

impl From<GetObjectRequest> for GetObjectFromRequest {
    /// The whole artifact: its bytes from the first on.
    fn from(r: GetObjectRequest) -> Self {
        Self {
            bucket: r.bucket,
            key: r.key,
            offset: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct ConfirmResponse {
    /// The cursor after the call.
    pub cursor: u64,
}

/// `PutObject(bucket, key, bytes)`: this frame is followed on the same stream by exactly `size`
/// raw bytes, then the caller finishes its side. Answered once the bytes are durable.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct PutObjectRequest {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    /// Kept with the object and returned by `GetObject`.
    pub media_type: Option<String>,
}

/// `GetObject(bucket, key)`: answered by [`Response::GetObject`] and the artifact's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct GetObjectRequest {
    pub bucket: String,
    pub key: String,
}

/// The bytes of an artifact from `offset` on (at most its size): answered by
/// [`Response::GetObject`] with the whole artifact's meta, then `size - offset` bytes.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct GetObjectFromRequest {
    pub bucket: String,
    pub key: String,
    pub offset: u64,
}

/// A stored artifact, as `PutObject` stored it and `GetObject` streams it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct ObjectMeta {
    pub bucket: String,
    pub key: String,
    pub digest: ObjectDigest,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
}
