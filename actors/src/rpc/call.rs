//! One finished RPC call, logged and counted in one place (SPEC §11, §12).
//!
//! Metrics: every call is counted in `bsfg_rpc_requests_total{operation,code}` (`OK`, or the code
//! of its failure) and timed in `bsfg_rpc_latency_seconds{operation}` — its work, without the
//! time a fetch waited for new facts; fetches and confirms count by role; appends count facts
//! (`bsfg_append_requests_total`, failures by code, duplicates of the store buffer, the call's
//! latency); uploads count by outcome; a local consumer's `GetObject` counts as an artifact
//! retrieval (a failure when the node could not serve an object it was asked for: `NOT_FOUND`,
//! `UNAVAILABLE`, `INTERNAL`; not a caller's mistake such as a denied or malformed request).
//!
//! Log line: with `log.audit = true` every call is logged once as `rpc_call` — an append call
//! that succeeded as `fact_appended` (SPEC §12's name for it), with the same fields: the caller's
//! identity, the operation, the outcome (`result`, and for failures the wire `code` and
//! `error_message`), `duration_ms`, and what the call was about — `message_id`,
//! `to_zone` and `predicate` of an append; the number of `facts` of an `AppendFacts` call, how many
//! were `appended`, `duplicates` or `failed`, and the index (`first_failed`), `code` and
//! `error_message` of the first failure — logged with or without auditing — and, when auditing,
//! its `first_message_id` and `last_message_id`; the `consumer`, or the `peer`, of a fetch or
//! confirm; the size of a fetched page and, when auditing, its `first_offset`, `last_offset`,
//! `first_message_id` and `last_message_id` (read from the stored encodings, never decoding a
//! fact); `bucket` and `key` of an object call, with the stored `digest` and `size`. A page is one
//! line, however many facts it holds. `duration_ms` is the whole call; a fetch that waited for new
//! facts also says `waited_ms`. With `audit = false` only failures are logged, as `rpc_rejected`,
//! without the request's details.
//!
//! The line is on the hot path of every append: values are borrowed or copied into the record,
//! never formatted; the request's details are copied only when auditing.

use std::time::Duration;

use bsfg_proto::{codec, AppendResponse, BatchTally, EncodedPage, ErrorCode, Request, Response, RpcError};
use slog::{info, warn, Record, Serializer, KV};

use super::caller::Caller;
use crate::{
    events::{FactsDuplicated, Telemetry, CODE_OK, ROLE_CONSUMER, ROLE_PEER},
    metrics::Metrics,
    storage::Log,
};

pub const RPC_CALL: &str = "rpc_call";
/// The audit line of an `AppendFact` or `AppendFacts` call that succeeded (duplicates included).
pub const FACT_APPENDED: &str = "fact_appended";
pub const RPC_REJECTED: &str = "rpc_rejected";

/// What a call answers: a response, or a page served from the stored encodings of its facts,
/// which goes on the wire as the `Response::Fetch` it encodes to, with how long the fetch waited
/// for its first fact.
pub(super) enum Answer {
    Response(Response),
    Page { page: EncodedPage, waited: Duration },
}

impl Answer {
    /// How long the call waited for new facts rather than worked.
    pub(super) fn waited(&self) -> Duration {
        match self {
            Self::Page { waited, .. } => *waited,
            Self::Response(_) => Duration::ZERO,
        }
    }
}

impl From<Response> for Answer {
    fn from(response: Response) -> Self {
        Self::Response(response)
    }
}

impl bincode::Encode for Answer {
    fn encode<E: bincode::enc::Encoder>(&self, encoder: &mut E) -> Result<(), bincode::error::EncodeError> {
        match self {
            Self::Response(response) => response.encode(encoder),
            Self::Page { page, .. } => page.encode(encoder),
        }
    }
}

/// What a request was about, copied out of it before it is dispatched (the request moves on).
#[derive(Debug, Default)]
pub(super) struct Details {
    /// Captured for an audit line: the answer's details are written too.
    audited: bool,
    message_id: Option<String>,
    /// The first and last message of an `AppendFacts` call.
    first_message_id: Option<String>,
    last_message_id: Option<String>,
    from_zone: Option<String>,
    to_zone: Option<String>,
    predicate: Option<String>,
    consumer: Option<String>,
    offset: Option<u64>,
    bucket: Option<String>,
    key: Option<String>,
}

impl Details {
    /// The request's details when auditing (`log.audit`), else none: refusals logged without
    /// auditing carry only the outcome.
    pub(super) fn capture(request: &Request, caller: &Caller, audit: bool) -> Self {
        match audit {
            true => Self {
                audited: true,
                ..Self::of(request, caller)
            },
            false => Self::default(),
        }
    }

    /// [`Details::capture`] of an `AppendFact` of `message`.
    pub(super) fn capture_append(message: &bsfg_proto::Message, audit: bool) -> Self {
        match audit {
            true => Self {
                audited: true,
                ..Self::of_append(message)
            },
            false => Self::default(),
        }
    }

    fn of_append(message: &bsfg_proto::Message) -> Self {
        Self {
            message_id: Some(message.envelope.message_id.clone()),
            from_zone: Some(message.envelope.from_zone.clone()),
            to_zone: Some(message.envelope.to_zone.clone()),
            predicate: Some(message.fact.predicate.clone()),
            ..Self::default()
        }
    }

    /// A peer's consumer name is derived from its certificate, so only clients' names are kept.
    fn of(request: &Request, caller: &Caller) -> Self {
        let consumer = |name: &str| (!matches!(caller, Caller::Peer(_))).then(|| name.to_owned());
        match request {
            Request::Append(r) => Self::of_append(&r.message),
            Request::AppendBatch(r) | Request::AppendInOrder(r) => {
                let id = |m: Option<&bsfg_proto::Message>| m.map(|m| m.envelope.message_id.clone());
                Self {
                    first_message_id: id(r.messages.first()),
                    last_message_id: id(r.messages.last()),
                    ..Self::default()
                }
            }
            Request::Fetch(r) | Request::FetchHeld(bsfg_proto::FetchHeldRequest { fetch: r, .. }) => Self {
                consumer: consumer(&r.consumer),
                ..Self::default()
            },
            Request::Confirm(r) => Self {
                consumer: consumer(&r.consumer),
                offset: Some(r.offset),
                ..Self::default()
            },
            Request::PutObject(r) => Self::object(&r.bucket, &r.key),
            Request::GetObject(r) => Self::object(&r.bucket, &r.key),
            Request::GetObjectFrom(r) => Self::object(&r.bucket, &r.key),
        }
    }

    fn object(bucket: &str, key: &str) -> Self {
        Self {
            bucket: Some(bucket.to_owned()),
            key: Some(key.to_owned()),
            ..Self::default()
        }
    }
}

/// One finished call.
pub(super) struct Call<'a> {
    pub caller: &'a Caller,
    pub operation: &'static str,
    /// Facts the call asked to append ([`Request::facts`]).
    pub facts: usize,
    pub details: &'a Details,
    pub answer: &'a Answer,
    /// From the request read to the answer, less [`Answer::waited`].
    pub took: Duration,
}

impl Call<'_> {
    /// Counts the call and writes its line, if it gets one.
    pub(super) fn emit(self, telemetry: &Telemetry, audit: bool) {
        self.record(telemetry);
        let log = &telemetry.log;
        match (audit, failure(self.answer).is_some()) {
            (true, false) => info!(log, #"audit", "{}", self.success_event(); self),
            (true, true) => warn!(log, #"audit", "{}", RPC_CALL; self),
            (false, true) => warn!(log, "{}", RPC_REJECTED; self),
            (false, false) => {}
        }
    }

    /// The name of the line of a call that succeeded.
    fn success_event(&self) -> &'static str {
        match self.operation {
            "append_fact" | "append_facts" => FACT_APPENDED,
            _ => RPC_CALL,
        }
    }

    /// Counts and times the call (SPEC §11). The append counters count facts: an `AppendFacts`
    /// call adds a request for each message answered (an in-order call leaves the messages after
    /// its first failure unanswered and uncounted) and a failure for each fact that failed (a call
    /// refused whole counts each of its `facts`, at least one, so even an empty call shows).
    fn record(&self, telemetry: &Telemetry) {
        let (metrics, took) = (&*telemetry.metrics, self.took.as_secs_f64());
        metrics.rpc_latency.with_label_values(&[self.operation]).observe(took);
        let code = failure(self.answer).map_or(CODE_OK, |e| e.code.as_str());
        metrics.rpc_requests.with_label_values(&[self.operation, code]).inc();
        let role = match self.caller {
            Caller::Peer(_) => ROLE_PEER,
            _ => ROLE_CONSUMER,
        };
        match (self.operation, self.answer) {
            ("append_fact" | "append_facts", Answer::Response(Response::Error(e))) => {
                let facts = self.facts.max(1) as u64;
                metrics.append_requests.inc_by(facts);
                metrics
                    .append_failures
                    .with_label_values(&[e.code.as_str()])
                    .inc_by(facts);
            }
            ("append_fact", Answer::Response(Response::Append(ack))) => {
                record_appended(telemetry, std::slice::from_ref(&Ok(*ack)), took)
            }
            ("append_facts", Answer::Response(Response::AppendBatch(batch))) => {
                record_appended(telemetry, &batch.results, took)
            }
            ("fetch_facts", _) => metrics.fetch_requests.with_label_values(&[role]).inc(),
            ("confirm_receipt", _) => metrics.confirm_requests.with_label_values(&[role]).inc(),
            ("put_object", Answer::Response(Response::PutObject(_))) => metrics.artifact_upload_total.inc(),
            ("put_object", _) => metrics.artifact_upload_failures.inc(),
            ("get_object", answer) if role == ROLE_CONSUMER => record_retrieval(metrics, answer),
            _ => {}
        }
    }
}

/// A local consumer's `GetObject`: a retrieval, or a failure to serve one.
fn record_retrieval(metrics: &Metrics, answer: &Answer) {
    match failure(answer).map(|e| e.code) {
        None => metrics.artifact_retrieval_total.inc(),
        Some(ErrorCode::NotFound | ErrorCode::Unavailable | ErrorCode::Internal) => {
            metrics.artifact_retrieval_failures.inc()
        }
        Some(_) => {}
    }
}

fn record_appended(telemetry: &Telemetry, results: &[Result<AppendResponse, RpcError>], took: f64) {
    let metrics: &Metrics = &telemetry.metrics;
    metrics.append_requests.inc_by(results.len() as u64);
    metrics.append_latency.observe(took);
    telemetry.emit(FactsDuplicated {
        log: Log::Store,
        count: BatchTally::of(results).duplicates,
    });
    for error in results.iter().filter_map(|r| r.as_ref().err()) {
        metrics.append_failures.with_label_values(&[error.code.as_str()]).inc();
    }
}

impl KV for Call<'_> {
    fn serialize(&self, _: &Record, s: &mut dyn Serializer) -> slog::Result {
        s.emit_str("caller", self.caller.identity())?;
        if let Caller::Peer(zone) = self.caller {
            s.emit_str("peer", zone)?;
        }
        s.emit_str("operation", self.operation)?;
        if self.operation == "append_facts" {
            s.emit_usize("facts", self.facts)?;
        }
        let waited = self.answer.waited();
        s.emit_f64("duration_ms", (self.took + waited).as_secs_f64() * 1000.0)?;
        if !waited.is_zero() {
            s.emit_f64("waited_ms", waited.as_secs_f64() * 1000.0)?;
        }
        emit_details(self.details, s)?;
        emit_outcome(self.answer, self.details.audited, s)
    }
}

fn emit_details(d: &Details, s: &mut dyn Serializer) -> slog::Result {
    let texts = [
        ("message_id", &d.message_id),
        ("from_zone", &d.from_zone),
        ("to_zone", &d.to_zone),
        ("predicate", &d.predicate),
        ("consumer", &d.consumer),
        ("first_message_id", &d.first_message_id),
        ("last_message_id", &d.last_message_id),
        ("bucket", &d.bucket),
        ("key", &d.key),
    ];
    for (key, value) in texts {
        if let Some(value) = value {
            s.emit_str(key, value)?;
        }
    }
    match d.offset {
        Some(offset) => s.emit_u64("offset", offset),
        None => Ok(()),
    }
}

/// The error of a failed call, or of the first failed fact of a batch.
fn failure(answer: &Answer) -> Option<&RpcError> {
    match answer {
        Answer::Response(Response::Error(e)) => Some(e),
        Answer::Response(Response::AppendBatch(batch)) => batch.first_error(),
        _ => None,
    }
}

/// A page's size, and when `audited` which facts it held: first and last offset and message id.
fn emit_page(page: &EncodedPage, audited: bool, s: &mut dyn Serializer) -> slog::Result {
    s.emit_usize("facts", page.facts.len())?;
    s.emit_u64("high_offset", page.high_offset)?;
    let (Some(first), Some(last), true) = (page.facts.first(), page.facts.last(), audited) else {
        return Ok(());
    };
    s.emit_u64("first_offset", first.offset)?;
    s.emit_u64("last_offset", last.offset)?;
    for (key, fact) in [("first_message_id", first), ("last_message_id", last)] {
        if let Ok(id) = codec::message_id_of(&fact.message) {
            s.emit_str(key, id)?;
        }
    }
    Ok(())
}

fn emit_outcome(answer: &Answer, audited: bool, s: &mut dyn Serializer) -> slog::Result {
    let response = match answer {
        Answer::Page { page, .. } => {
            emit_page(page, audited, s)?;
            return s.emit_str("result", "success");
        }
        Answer::Response(response) => response,
    };
    match response {
        Response::Error(_) => {}
        Response::Append(ack) => {
            s.emit_u64("offset", ack.offset)?;
            s.emit_bool("duplicate", ack.duplicate)?;
        }
        Response::AppendBatch(batch) => {
            let tally = batch.tally();
            s.emit_usize("appended", tally.appended)?;
            s.emit_usize("duplicates", tally.duplicates)?;
            s.emit_usize("failed", tally.failed)?;
            if let Some(index) = tally.first_failed {
                s.emit_usize("first_failed", index)?;
            }
        }
        Response::Fetch(page) => {
            s.emit_usize("facts", page.facts.len())?;
            s.emit_u64("high_offset", page.high_offset)?;
        }
        Response::Confirm(c) => s.emit_u64("cursor", c.cursor)?,
        Response::PutObject(object) | Response::GetObject(object) => {
            s.emit_arguments("digest", &format_args!("{}", object.digest))?;
            s.emit_u64("size", object.size)?;
        }
    }
    match failure(answer) {
        Some(e) => {
            let result = if e.retryable {
                "retryable_error"
            } else {
                "permanent_error"
            };
            s.emit_str("result", result)?;
            s.emit_str("code", e.code.as_str())?;
            s.emit_str("error_message", &e.message)
        }
        None => s.emit_str("result", "success"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::testkit::logs::{field, Capture, Line};
    use bsfg_proto::{
        AppendBatchRequest, AppendBatchResponse, AppendRequest, AppendResponse, ConfirmRequest, ConfirmResponse,
        Envelope, Fact, Message, RpcError,
    };

    fn logged(audit: bool, caller: &Caller, request: &Request, response: &Response) -> Line {
        emitted(audit, caller, request, response).0
    }

    /// The line a call writes, and the metrics it counted into.
    fn emitted(audit: bool, caller: &Caller, request: &Request, response: &Response) -> (Line, Arc<Metrics>) {
        let capture = Capture::default();
        let log = capture.logger();
        let details = Details::capture(request, caller, audit);
        let call = Call {
            caller,
            operation: request.operation(),
            facts: request.facts(),
            details: &details,
            answer: &Answer::Response(response.clone()),
            took: Duration::from_micros(1500),
        };
        let metrics = Arc::new(Metrics::new("plant-a", "test").expect("metrics"));
        call.emit(&Telemetry::new(log, metrics.clone(), &[]), audit);
        (capture.lines().pop().unwrap_or_default(), metrics)
    }

    fn append() -> Request {
        Request::Append(AppendRequest {
            message: Message {
                envelope: Envelope {
                    message_id: "order-17".into(),
                    from_zone: "enterprise".into(),
                    to_zone: "plant-a".into(),
                    ..Envelope::default()
                },
                fact: Fact {
                    subject: "order/17".into(),
                    predicate: "released".into(),
                    object_json: "{}".into(),
                },
            },
        })
    }

    fn client() -> Caller {
        Caller::Client {
            identity: "erp".into(),
            roles: crate::rpc::Roles::default(),
        }
    }

    #[test]
    fn an_audited_append_names_caller_message_and_outcome() {
        let ack = Response::Append(AppendResponse {
            offset: 42,
            duplicate: false,
        });
        let fields = logged(true, &client(), &append(), &ack);
        for (key, value) in [
            ("msg", "fact_appended"),
            ("caller", "erp"),
            ("operation", "append_fact"),
            ("result", "success"),
            ("message_id", "order-17"),
            ("to_zone", "plant-a"),
            ("predicate", "released"),
            ("offset", "42"),
            ("duration_ms", "1.5"),
        ] {
            assert_eq!(field(&fields, key), Some(value), "{key}: {fields:?}");
        }
        assert_eq!(field(&fields, "peer"), None);
    }

    #[test]
    fn without_audit_only_failures_are_logged() {
        let refused = Response::Error(RpcError::unavailable("node is draining"));
        let fields = logged(false, &client(), &append(), &refused);
        assert_eq!(field(&fields, "msg"), Some("rpc_rejected"));
        assert_eq!(field(&fields, "result"), Some("retryable_error"));
        assert_eq!(field(&fields, "code"), Some("UNAVAILABLE"));
        assert_eq!(field(&fields, "error_message"), Some("node is draining"));
        assert_eq!(
            field(&fields, "message_id"),
            None,
            "details are kept only when auditing"
        );
        let ack = Response::Append(AppendResponse {
            offset: 1,
            duplicate: true,
        });
        assert!(logged(false, &client(), &append(), &ack).is_empty());
    }

    #[test]
    fn a_batch_is_one_line_with_counts_and_its_first_failure() {
        let Request::Append(one) = append() else {
            unreachable!("append() builds an append")
        };
        let batch = Request::AppendBatch(AppendBatchRequest {
            messages: vec![one.message.clone(), one.message.clone(), one.message],
        });
        let ok = |offset, duplicate| Ok(AppendResponse { offset, duplicate });
        let mixed = Response::AppendBatch(AppendBatchResponse {
            results: vec![ok(7, false), ok(3, true), Err(RpcError::invalid("to_zone \"nowhere\""))],
        });
        let fields = logged(true, &client(), &batch, &mixed);
        for (key, value) in [
            ("msg", "rpc_call"),
            ("operation", "append_facts"),
            ("facts", "3"),
            ("appended", "1"),
            ("duplicates", "1"),
            ("failed", "1"),
            ("result", "permanent_error"),
            ("code", "INVALID_ARGUMENT"),
        ] {
            assert_eq!(field(&fields, key), Some(value), "{key}: {fields:?}");
        }
        assert_eq!(field(&fields, "first_failed"), Some("2"));
        let without_audit = logged(false, &client(), &batch, &mixed);
        for (key, value) in [
            ("msg", "rpc_rejected"),
            ("facts", "3"),
            ("failed", "1"),
            ("first_failed", "2"),
            ("code", "INVALID_ARGUMENT"),
        ] {
            assert_eq!(field(&without_audit, key), Some(value), "{key}: {without_audit:?}");
        }
        let clean = Response::AppendBatch(AppendBatchResponse {
            results: vec![ok(7, false)],
        });
        assert!(logged(false, &client(), &batch, &clean).is_empty());
        let fields = logged(true, &client(), &batch, &clean);
        assert_eq!(field(&fields, "msg"), Some("fact_appended"), "{fields:?}");
        assert_eq!(field(&fields, "appended"), Some("1"), "{fields:?}");
    }

    #[test]
    fn a_call_that_appends_nothing_stays_an_rpc_call() {
        let confirm = Request::Confirm(ConfirmRequest {
            consumer: "mes".into(),
            offset: 7,
        });
        let fields = logged(
            true,
            &client(),
            &confirm,
            &Response::Confirm(ConfirmResponse { cursor: 7 }),
        );
        assert_eq!(field(&fields, "msg"), Some("rpc_call"), "{fields:?}");
        assert_eq!(field(&fields, "result"), Some("success"), "{fields:?}");
    }

    #[test]
    fn a_batch_counts_its_facts_where_its_line_counts_them() {
        let Request::Append(one) = append() else {
            unreachable!("append() builds an append")
        };
        let batch = Request::AppendBatch(AppendBatchRequest {
            messages: vec![one.message.clone(), one.message.clone(), one.message],
        });
        let ok = |offset, duplicate| Ok(AppendResponse { offset, duplicate });
        let mixed = Response::AppendBatch(AppendBatchResponse {
            results: vec![ok(7, false), ok(3, true), Err(RpcError::invalid("to_zone \"nowhere\""))],
        });
        let (line, metrics) = emitted(false, &client(), &batch, &mixed);
        assert_eq!(field(&line, "facts"), Some("3"));
        assert_eq!(metrics.append_requests.get(), 3);
        assert_eq!(
            metrics.append_failures.with_label_values(&["INVALID_ARGUMENT"]).get(),
            1
        );
        assert_eq!(metrics.duplicate_facts.with_label_values(&["store"]).get(), 1);
        assert_eq!(metrics.append_latency.get_sample_count(), 1, "one call, one latency");
        let rpc = metrics.rpc_latency.with_label_values(&["append_facts"]);
        assert_eq!(rpc.get_sample_count(), 1);

        let refused = Response::Error(RpcError::unavailable("node is draining"));
        let (_, metrics) = emitted(false, &client(), &batch, &refused);
        assert_eq!(
            metrics.append_requests.get(),
            3,
            "a call refused whole counts its facts"
        );
        assert_eq!(metrics.append_failures.with_label_values(&["UNAVAILABLE"]).get(), 3);
    }

    #[test]
    fn every_call_counts_by_operation_and_outcome() {
        let ack = Response::Append(AppendResponse {
            offset: 1,
            duplicate: false,
        });
        let (_, metrics) = emitted(false, &client(), &append(), &ack);
        let count = |op: &str, code: &str| metrics.rpc_requests.with_label_values(&[op, code]).get();
        assert_eq!(count("append_fact", "OK"), 1);
        let refused = Response::Error(RpcError::unavailable("node is draining"));
        let (_, metrics) = emitted(false, &client(), &append(), &refused);
        let count = |op: &str, code: &str| metrics.rpc_requests.with_label_values(&[op, code]).get();
        assert_eq!(
            (count("append_fact", "OK"), count("append_fact", "UNAVAILABLE")),
            (0, 1)
        );
    }

    #[test]
    fn a_local_consumers_get_object_counts_as_a_retrieval() {
        let get = Request::GetObject(bsfg_proto::GetObjectRequest {
            bucket: "batch".into(),
            key: "42.pdf".into(),
        });
        let meta = bsfg_proto::ObjectMeta {
            bucket: "batch".into(),
            key: "42.pdf".into(),
            digest: bsfg_proto::ObjectDigest::of(b"pdf"),
            size: 3,
            media_type: Some("application/pdf".into()),
        };
        let (_, metrics) = emitted(true, &client(), &get, &Response::GetObject(meta));
        assert_eq!(metrics.artifact_retrieval_total.get(), 1);
        let missing = Response::Error(RpcError::new(bsfg_proto::ErrorCode::NotFound, "no object"));
        let (_, metrics) = emitted(true, &client(), &get, &missing);
        assert_eq!(
            metrics.artifact_retrieval_failures.get(),
            1,
            "the node could not serve it"
        );
        let denied = Response::Error(RpcError::denied("no consume role"));
        let (_, metrics) = emitted(true, &client(), &get, &denied);
        assert_eq!(metrics.artifact_retrieval_failures.get(), 0, "the caller's mistake");
    }

    #[test]
    fn audited_batches_and_pages_name_their_first_and_last_facts() {
        let Request::Append(one) = append() else {
            unreachable!("append() builds an append")
        };
        let mut last = one.message.clone();
        last.envelope.message_id = "order-19".into();
        let batch = Request::AppendBatch(AppendBatchRequest {
            messages: vec![one.message.clone(), one.message.clone(), last.clone()],
        });
        let ok = |offset| {
            Ok(AppendResponse {
                offset,
                duplicate: false,
            })
        };
        let done = Response::AppendBatch(AppendBatchResponse {
            results: vec![ok(7), ok(7), ok(8)],
        });
        let line = logged(true, &client(), &batch, &done);
        assert_eq!(field(&line, "first_message_id"), Some("order-17"));
        assert_eq!(field(&line, "last_message_id"), Some("order-19"));

        let encoded = |offset, message: &Message| bsfg_proto::EncodedFact {
            offset,
            message: bsfg_proto::codec::encode_value(message).expect("encode"),
        };
        let page = EncodedPage {
            facts: vec![encoded(11, &one.message), encoded(12, &last)],
            high_offset: 12,
        };
        let fetch = Request::Fetch(bsfg_proto::FetchRequest {
            consumer: "mes".into(),
            limit: 10,
            max_wait_ms: 1000,
            after: None,
        });
        let capture = Capture::default();
        let details = Details::capture(&fetch, &client(), true);
        let answer = Answer::Page {
            page,
            waited: Duration::from_millis(700),
        };
        let call = Call {
            caller: &client(),
            operation: fetch.operation(),
            facts: 0,
            details: &details,
            answer: &answer,
            took: Duration::from_millis(2),
        };
        let metrics = Arc::new(Metrics::new("plant-a", "test").expect("metrics"));
        call.emit(&Telemetry::new(capture.logger(), metrics.clone(), &[]), true);
        let line = capture.lines().pop().unwrap_or_default();
        for (key, value) in [
            ("facts", "2"),
            ("first_offset", "11"),
            ("last_offset", "12"),
            ("first_message_id", "order-17"),
            ("last_message_id", "order-19"),
            ("consumer", "mes"),
            ("duration_ms", "702"),
            ("waited_ms", "700"),
        ] {
            assert_eq!(field(&line, key), Some(value), "{key}: {line:?}");
        }
        let latency = metrics.rpc_latency.with_label_values(&["fetch_facts"]);
        assert!(
            latency.get_sample_sum() < 0.01,
            "the long-poll wait is not the call's work: {}",
            latency.get_sample_sum()
        );
    }

    #[test]
    fn a_peer_call_names_the_peer_not_its_derived_consumer() {
        let confirm = Request::Confirm(ConfirmRequest {
            consumer: "peer:plant-a".into(),
            offset: 7,
        });
        let denied = Response::Error(RpcError::denied("no"));
        let fields = logged(true, &Caller::Peer("plant-a".into()), &confirm, &denied);
        assert_eq!(field(&fields, "peer"), Some("plant-a"));
        assert_eq!(field(&fields, "consumer"), None);
        assert_eq!(field(&fields, "result"), Some("permanent_error"));
        assert_eq!(field(&fields, "msg"), Some("rpc_call"));
    }
}
