//! One finished RPC call, logged and counted in one place (SPEC §11, §12).
//!
//! Metrics: every call is timed in `bsfg_rpc_latency_seconds{operation}`; fetches and confirms
//! count by role; appends count facts (`bsfg_append_requests_total`, failures by code, duplicates
//! of the store buffer, the call's latency); uploads count by outcome.
//!
//! Log line: with `log.audit = true` every call is logged once as
//! `rpc_call`: the caller's identity, the operation, the outcome (`result`, and for failures the
//! wire `code` and `error_message`), `duration_ms`, and what the call was about — `message_id`,
//! `to_zone` and `predicate` of an append; the number of `facts` of an `AppendFacts` call, how many
//! were `appended`, `duplicates` or `failed`, and the index (`first_failed`), `code` and
//! `error_message` of the first failure — logged with or without auditing; the `consumer`, or the `peer`, of a fetch or confirm;
//! the size of a fetched page; `bucket` and `key` of an object call, with the stored `digest` and
//! `size`. A page is one line, however many facts it holds. With
//! `audit = false` only failures are logged, as `rpc_rejected`, without the request's details.
//!
//! The line is on the hot path of every append: values are borrowed or copied into the record,
//! never formatted; the request's details are copied only when auditing.

use std::time::Duration;

use bsfg_proto::{AppendResponse, BatchTally, EncodedPage, Request, Response, RpcError};
use slog::{info, warn, Record, Serializer, KV};

use super::caller::Caller;
use crate::{
    events::{FactsDuplicated, Telemetry, ROLE_CONSUMER, ROLE_PEER},
    metrics::Metrics,
    storage::Log,
};

pub const RPC_CALL: &str = "rpc_call";
pub const RPC_REJECTED: &str = "rpc_rejected";

/// What a call answers: a response, or a page served from the stored encodings of its facts,
/// which goes on the wire as the `Response::Fetch` it encodes to.
pub(super) enum Answer {
    Response(Response),
    Page(EncodedPage),
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
            Self::Page(page) => page.encode(encoder),
        }
    }
}

/// What a request was about, copied out of it before it is dispatched (the request moves on).
#[derive(Debug, Default)]
pub(super) struct Details {
    message_id: Option<String>,
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
            true => Self::of(request, caller),
            false => Self::default(),
        }
    }

    /// A peer's consumer name is derived from its certificate, so only clients' names are kept.
    fn of(request: &Request, caller: &Caller) -> Self {
        let consumer = |name: &str| (!matches!(caller, Caller::Peer(_))).then(|| name.to_owned());
        match request {
            Request::Append(r) => Self {
                message_id: Some(r.message.envelope.message_id.clone()),
                to_zone: Some(r.message.envelope.to_zone.clone()),
                predicate: Some(r.message.fact.predicate.clone()),
                ..Self::default()
            },
            Request::AppendBatch(_) => Self::default(),
            Request::Fetch(r) => Self {
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
    pub took: Duration,
}

impl Call<'_> {
    /// Counts the call and writes its line, if it gets one.
    pub(super) fn emit(self, telemetry: &Telemetry, audit: bool) {
        self.record(telemetry);
        let log = &telemetry.log;
        match (audit, failure(self.answer).is_some()) {
            (true, false) => info!(log, "{}", RPC_CALL; self),
            (true, true) => warn!(log, "{}", RPC_CALL; self),
            (false, true) => warn!(log, "{}", RPC_REJECTED; self),
            (false, false) => {}
        }
    }

    /// Counts and times the call (SPEC §11). The append counters count facts: an `AppendFacts`
    /// call of `facts` messages adds `facts` requests, and a failure for each fact that failed (a
    /// call refused whole counts at least one, so even an empty call shows in the failures).
    fn record(&self, telemetry: &Telemetry) {
        let (metrics, took) = (&*telemetry.metrics, self.took.as_secs_f64());
        metrics.rpc_latency.with_label_values(&[self.operation]).observe(took);
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
            _ => {}
        }
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
        s.emit_f64("duration_ms", self.took.as_secs_f64() * 1000.0)?;
        emit_details(self.details, s)?;
        emit_outcome(self.answer, s)
    }
}

fn emit_details(d: &Details, s: &mut dyn Serializer) -> slog::Result {
    let texts = [
        ("message_id", &d.message_id),
        ("to_zone", &d.to_zone),
        ("predicate", &d.predicate),
        ("consumer", &d.consumer),
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

fn emit_outcome(answer: &Answer, s: &mut dyn Serializer) -> slog::Result {
    let response = match answer {
        Answer::Page(page) => {
            s.emit_usize("facts", page.facts.len())?;
            s.emit_u64("high_offset", page.high_offset)?;
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
        AppendBatchRequest, AppendBatchResponse, AppendRequest, AppendResponse, ConfirmRequest, Envelope, Fact,
        Message, RpcError,
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
            ("msg", "rpc_call"),
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
