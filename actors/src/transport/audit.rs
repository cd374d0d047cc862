//! The log line of one RPC call (SPEC §12). With `log.audit = true` every call is logged once as
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

use bsfg_proto::{Request, Response, RpcError};
use slog::{info, warn, Logger, Record, Serializer, KV};

use super::{server::Answer, Caller};

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
            Request::AppendBatch(_) | Request::AppendInOrder(_) => Self::default(),
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
    /// Writes the call's line, if this call gets one.
    pub(super) fn log(self, log: &Logger, audit: bool) {
        match (audit, failure(self.answer).is_some()) {
            (true, false) => info!(log, "rpc_call"; self),
            (true, true) => warn!(log, "rpc_call"; self),
            (false, true) => warn!(log, "rpc_rejected"; self),
            (false, false) => {}
        }
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
    use std::sync::{Arc, Mutex};

    use bsfg_proto::{
        AppendBatchRequest, AppendBatchResponse, AppendRequest, AppendResponse, ConfirmRequest, Envelope, Fact,
        Message, RpcError,
    };
    use slog::Drain;

    use super::*;

    /// A record as text: its fields, then `msg`.
    type Line = Vec<(String, String)>;

    /// Keeps each record as a [`Line`], for assertions.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<Line>>>);

    struct Fields(Line);

    impl Serializer for Fields {
        fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments) -> slog::Result {
            self.0.push((key.to_string(), val.to_string()));
            Ok(())
        }
    }

    impl Drain for Capture {
        type Ok = ();
        type Err = slog::Never;

        fn log(&self, record: &Record, values: &slog::OwnedKVList) -> Result<(), slog::Never> {
            let mut fields = Fields(Vec::new());
            let _ = record.kv().serialize(record, &mut fields);
            let _ = values.serialize(record, &mut fields);
            fields.0.push(("msg".into(), record.msg().to_string()));
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(fields.0);
            Ok(())
        }
    }

    fn logged(audit: bool, caller: &Caller, request: &Request, response: &Response) -> Line {
        let capture = Capture::default();
        let log = Logger::root(capture.clone(), slog::o!());
        let details = Details::capture(request, caller, audit);
        let call = Call {
            caller,
            operation: request.operation(),
            facts: request.facts(),
            details: &details,
            answer: &Answer::Response(response.clone()),
            took: Duration::from_micros(1500),
        };
        call.log(&log, audit);
        let mut lines = capture.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        lines.pop().unwrap_or_default()
    }

    fn field<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
        fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
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
            roles: super::super::Roles::default(),
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
