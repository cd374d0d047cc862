//! Property: every wire type survives encode → frame → decode unchanged, and arbitrary bytes fed
//! to the decoder are an error (never a panic) that never allocates far past the input's size.

// The counting allocator below is the only way to observe allocations; it forwards to the
// system allocator unchanged.
#![allow(unsafe_code)]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    collections::BTreeMap,
};

use bsfg_proto::{
    codec, AppendBatchRequest, AppendBatchResponse, AppendRequest, AppendResponse, ConfirmRequest, ConfirmResponse,
    EncodedFact, EncodedPage, Envelope, ErrorCode, Fact, FetchHeldRequest, FetchRequest, FetchResponse, FetchedFact,
    GetObjectFromRequest, GetObjectRequest, Message, ObjectDigest, ObjectMeta, PutObjectRequest, Request, Response,
    RpcError,
};
use proptest::prelude::*;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(layout.size())));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MAX_FRAME: usize = 16 << 20;

fn text() -> impl Strategy<Value = String> {
    "[a-z0-9 \\-]{0,24}"
}

fn message() -> impl Strategy<Value = Message> {
    let labels = prop::collection::btree_map(text(), text(), 0..4);
    let envelope = (
        text(),
        text(),
        text(),
        any::<u64>(),
        prop::option::of(text()),
        prop::option::of(text()),
        labels,
        prop::collection::vec("[a-z0-9-]{1,12}", 0..3),
        prop::option::of(text()),
    )
        .prop_map(
            |(
                message_id,
                from_zone,
                to_zone,
                produced_at_unix_ms,
                correlation_id,
                object_media_type,
                labels,
                hops,
                object_schema,
            )| {
                Envelope {
                    message_id,
                    from_zone,
                    to_zone,
                    produced_at_unix_ms,
                    correlation_id,
                    causation_id: None,
                    labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
                    object_media_type,
                    object_schema,
                    hops,
                }
            },
        );
    let fact = (text(), text(), any::<i64>()).prop_map(|(subject, predicate, n)| Fact {
        subject,
        predicate,
        object_json: format!("{{\"n\":{n}}}"),
    });
    (envelope, fact).prop_map(|(envelope, fact)| Message { envelope, fact })
}

fn code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(vec![
        ErrorCode::InvalidArgument,
        ErrorCode::AlreadyExists,
        ErrorCode::NotFound,
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
        ErrorCode::ResourceExhausted,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ])
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        message().prop_map(|message| Request::Append(AppendRequest { message })),
        (text(), any::<u32>(), any::<u32>(), prop::option::of(any::<u64>())).prop_map(
            |(consumer, limit, max_wait_ms, after)| Request::Fetch(FetchRequest {
                consumer,
                limit,
                max_wait_ms,
                after
            })
        ),
        (text(), any::<u64>()).prop_map(|(consumer, offset)| Request::Confirm(ConfirmRequest { consumer, offset })),
        (text(), text(), any::<u64>(), prop::option::of(text())).prop_map(|(bucket, key, size, media_type)| {
            Request::PutObject(PutObjectRequest {
                bucket,
                key,
                size,
                media_type,
            })
        }),
        (text(), text()).prop_map(|(bucket, key)| Request::GetObject(GetObjectRequest { bucket, key })),
        prop::collection::vec(message(), 0..8)
            .prop_map(|messages| Request::AppendBatch(AppendBatchRequest { messages })),
        prop::collection::vec(message(), 0..8)
            .prop_map(|messages| Request::AppendInOrder(AppendBatchRequest { messages })),
        (text(), text(), any::<u64>()).prop_map(|(bucket, key, offset)| Request::GetObjectFrom(GetObjectFromRequest {
            bucket,
            key,
            offset
        })),
        (
            text(),
            any::<u32>(),
            prop::option::of(any::<u64>()),
            prop::collection::vec(text(), 0..4)
        )
            .prop_map(
                |(consumer, limit, after, held_zones)| Request::FetchHeld(FetchHeldRequest {
                    fetch: FetchRequest {
                        consumer,
                        limit,
                        max_wait_ms: 0,
                        after
                    },
                    held_zones
                })
            ),
    ]
}

fn object_meta() -> impl Strategy<Value = ObjectMeta> {
    (
        text(),
        text(),
        any::<[u8; 32]>(),
        any::<u64>(),
        prop::option::of(text()),
    )
        .prop_map(|(bucket, key, digest, size, media_type)| ObjectMeta {
            bucket,
            key,
            digest: ObjectDigest(digest),
            size,
            media_type,
        })
}

fn response() -> impl Strategy<Value = Response> {
    let facts = prop::collection::vec(
        (any::<u64>(), message()).prop_map(|(offset, message)| FetchedFact { offset, message }),
        0..8,
    );
    prop_oneof![
        (any::<u64>(), any::<bool>())
            .prop_map(|(offset, duplicate)| Response::Append(AppendResponse { offset, duplicate })),
        (facts, any::<u64>()).prop_map(|(facts, high_offset)| Response::Fetch(FetchResponse { facts, high_offset })),
        any::<u64>().prop_map(|cursor| Response::Confirm(ConfirmResponse { cursor })),
        (code(), text()).prop_map(|(code, message)| Response::Error(RpcError::new(code, message))),
        object_meta().prop_map(Response::PutObject),
        object_meta().prop_map(Response::GetObject),
        prop::collection::vec(
            prop_oneof![
                (any::<u64>(), any::<bool>()).prop_map(|(offset, duplicate)| Ok(AppendResponse { offset, duplicate })),
                (code(), text()).prop_map(|(code, message)| Err(RpcError::new(code, message))),
            ],
            0..8,
        )
        .prop_map(|results| Response::AppendBatch(AppendBatchResponse { results })),
    ]
}

fn fetch_response() -> impl Strategy<Value = FetchResponse> {
    let facts = prop::collection::vec(
        (any::<u64>(), message()).prop_map(|(offset, message)| FetchedFact { offset, message }),
        0..8,
    );
    (facts, any::<u64>()).prop_map(|(facts, high_offset)| FetchResponse { facts, high_offset })
}

proptest! {
    /// A page served from stored encodings is, on the wire, the page of decoded facts: readers
    /// cannot tell them apart.
    #[test]
    fn an_encoded_page_encodes_as_the_fetch_response(page in fetch_response()) {
        let encoded = EncodedPage {
            facts: page
                .facts
                .iter()
                .map(|f| EncodedFact { offset: f.offset, message: codec::encode_value(&f.message).expect("message") })
                .collect(),
            high_offset: page.high_offset,
        };
        let response = Response::Fetch(page);
        prop_assert_eq!(codec::encode_value(&encoded).expect("page"), codec::encode_value(&response).expect("response"));
        let frame = codec::encode_frame(&encoded, MAX_FRAME).expect("frame");
        prop_assert_eq!(codec::decode_frame::<Response>(&frame, MAX_FRAME), Ok(response));
    }

    /// Audit lines of pages read each fact's id from its stored encoding alone.
    #[test]
    fn the_message_id_and_the_to_zone_are_read_from_the_start_of_an_encoded_message(message in message()) {
        let encoded = codec::encode_value(&message).expect("message");
        prop_assert_eq!(codec::message_id_of(&encoded), Ok(message.envelope.message_id.as_str()));
        prop_assert_eq!(codec::to_zone_of(&encoded), Ok(message.envelope.to_zone.as_str()));
    }

    #[test]
    fn requests_round_trip(request in request()) {
        let frame = codec::encode_frame(&request, MAX_FRAME).expect("encode");
        prop_assert_eq!(codec::decode_frame::<Request>(&frame, MAX_FRAME), Ok(request));
    }

    #[test]
    fn responses_round_trip(response in response()) {
        let frame = codec::encode_frame(&response, MAX_FRAME).expect("encode");
        prop_assert_eq!(codec::decode_frame::<Response>(&frame, MAX_FRAME), Ok(response));
    }

    #[test]
    fn arbitrary_bodies_never_panic_nor_allocate_past_the_claim_limit(body in prop::collection::vec(any::<u8>(), 0..512)) {
        LARGEST.with(|l| l.set(0));
        let _ = codec::decode_body::<Request>(&body);
        let _ = codec::decode_body::<Response>(&body);
        let largest = LARGEST.with(Cell::get);
        // The claim budget for a body under 4 KiB is 64 KiB; nothing may allocate more.
        prop_assert!(largest <= 1 << 16, "decoding {} bytes allocated {} bytes at once", body.len(), largest);
    }

    #[test]
    fn truncated_frames_are_errors(request in request(), cut in 1usize..64) {
        let frame = codec::encode_frame(&request, MAX_FRAME).expect("encode");
        let cut = frame.len().saturating_sub(cut).max(1);
        prop_assert!(codec::decode_frame::<Request>(&frame[..cut], MAX_FRAME).is_err());
    }
}

#[test]
fn a_header_over_the_limit_is_refused_before_reading_the_body() {
    let header = (MAX_FRAME as u32 + 1).to_be_bytes();
    assert_eq!(
        codec::body_len(header, MAX_FRAME),
        Err(codec::FrameError::TooLarge {
            len: MAX_FRAME + 1,
            limit: MAX_FRAME
        })
    );
}

#[test]
fn a_hostile_length_prefix_inside_the_body_does_not_allocate_it() {
    // Append(message) whose first string claims u64::MAX / 2 bytes: varint 0xFD + 8 bytes.
    let mut body = vec![0u8, 0xFD];
    body.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
    LARGEST.with(|l| l.set(0));
    assert!(codec::decode_body::<Request>(&body).is_err());
    assert!(LARGEST.with(Cell::get) <= 1 << 16);
}

#[test]
fn encoding_over_the_limit_fails_cleanly() {
    let message = Message {
        fact: Fact {
            object_json: "\"".to_owned() + &"x".repeat(100) + "\"",
            ..Fact::default()
        },
        ..Message::default()
    };
    let error = codec::encode_frame(&Request::Append(AppendRequest { message }), 50).expect_err("too large");
    assert!(matches!(error, codec::FrameError::TooLarge { limit: 50, .. }));
}

/// The variant tags are the wire format (new variants go last): the first byte of an encoded
/// request or response is its tag.
#[test]
fn variant_tags_are_pinned() {
    let get = GetObjectRequest {
        bucket: "b".into(),
        key: "k".into(),
    };
    let put = PutObjectRequest {
        bucket: "b".into(),
        key: "k".into(),
        size: 1,
        media_type: None,
    };
    let meta = ObjectMeta {
        bucket: "b".into(),
        key: "k".into(),
        digest: ObjectDigest([0; 32]),
        size: 1,
        media_type: None,
    };
    let tag = |bytes: Vec<u8>| bytes[0];
    let request_tags = [
        tag(codec::encode_value(&Request::Append(AppendRequest {
            message: Message::default(),
        }))
        .expect("append")),
        tag(codec::encode_value(&Request::Fetch(FetchRequest {
            consumer: "c".into(),
            limit: 1,
            max_wait_ms: 0,
            after: None,
        }))
        .expect("fetch")),
        tag(codec::encode_value(&Request::Confirm(ConfirmRequest {
            consumer: "c".into(),
            offset: 1,
        }))
        .expect("confirm")),
        tag(codec::encode_value(&Request::PutObject(put)).expect("put")),
        tag(codec::encode_value(&Request::GetObject(get)).expect("get")),
        tag(codec::encode_value(&Request::AppendBatch(AppendBatchRequest {
            messages: vec![Message::default()],
        }))
        .expect("append batch")),
        tag(codec::encode_value(&Request::AppendInOrder(AppendBatchRequest {
            messages: vec![Message::default()],
        }))
        .expect("append in order")),
        tag(codec::encode_value(&Request::GetObjectFrom(GetObjectFromRequest {
            bucket: "b".into(),
            key: "k".into(),
            offset: 1,
        }))
        .expect("get from")),
        tag(codec::encode_value(&Request::FetchHeld(FetchHeldRequest {
            fetch: FetchRequest {
                consumer: "c".into(),
                limit: 1,
                max_wait_ms: 0,
                after: None,
            },
            held_zones: vec!["z".into()],
        }))
        .expect("fetch held")),
    ];
    assert_eq!(request_tags, [0, 1, 2, 3, 4, 5, 6, 7, 8]);
    let response_tags = [
        tag(codec::encode_value(&Response::Append(AppendResponse {
            offset: 1,
            duplicate: false,
        }))
        .expect("append")),
        tag(codec::encode_value(&Response::Fetch(FetchResponse {
            facts: Vec::new(),
            high_offset: 0,
        }))
        .expect("fetch")),
        tag(codec::encode_value(&Response::Confirm(ConfirmResponse { cursor: 1 })).expect("confirm")),
        tag(codec::encode_value(&Response::Error(RpcError::new(ErrorCode::Internal, "x"))).expect("error")),
        tag(codec::encode_value(&Response::PutObject(meta.clone())).expect("put")),
        tag(codec::encode_value(&Response::GetObject(meta)).expect("get")),
        tag(codec::encode_value(&Response::AppendBatch(AppendBatchResponse { results: Vec::new() })).expect("batch")),
    ];
    assert_eq!(response_tags, [0, 1, 2, 3, 4, 5, 6]);
}
