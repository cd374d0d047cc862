//! Creates the zone's engine objects when missing and checks existing ones (design §4.2).
//!
//! Creating is idempotent on the server (the same config again returns the stream), so every
//! instance of a zone may do it at start; a stream that exists with another config is read back
//! and accepted only if what the zone's guarantees rest on matches: the replica count, file
//! storage, and persistence that fsyncs before acknowledging (not `persist_mode: async`).
//! Transient refusals (no meta leader yet, an election) are retried for [`PROVISION_TIMEOUT`].

use std::{
    collections::HashMap,
    future::Future,
    time::{Duration, Instant},
};

use async_nats::jetstream::{
    self,
    context::{
        CreateKeyValueError, CreateKeyValueErrorKind, CreateStreamError, CreateStreamErrorKind, GetStreamError,
        GetStreamErrorKind, KeyValueError,
    },
    kv,
    stream::{self, DiscardPolicy, PersistenceMode, StorageType},
    ErrorCode,
};

use super::{check_name, EngineError};
use crate::names;

/// How long provisioning retries transient refusals.
const PROVISION_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest record the log takes: its leader read (`STREAM.MSG.GET`) returns it base64-encoded
/// in JSON, which must stay under the servers' `max_payload` of 8 MB.
pub const MAX_RECORD_BYTES: usize = 4 << 20;
/// Room for a record's headers (id, expected sequence) in the stream's message size limit.
const HEADER_ROOM: usize = 4 << 10;

/// The zone's write-ahead log stream.
#[derive(Debug, Clone)]
pub struct LogSpec {
    pub zone: String,
    /// Servers holding each record (3 for an HA zone).
    pub replicas: usize,
    /// WAL budget: appends are refused (never older records dropped) beyond it; `None`: unlimited.
    pub max_bytes: Option<u64>,
    /// The server's msg-id dedupe window; must outlast every retry of an append.
    pub duplicate_window: Duration,
}

impl LogSpec {
    pub fn new(zone: &str, replicas: usize) -> Self {
        Self {
            zone: zone.to_owned(),
            replicas,
            max_bytes: None,
            duplicate_window: Duration::from_secs(120),
        }
    }

    pub(super) fn stream_config(&self) -> Result<stream::Config, EngineError> {
        check_name("zone", &self.zone)?;
        let limit = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Ok(stream::Config {
            name: names::wal_stream(&self.zone),
            subjects: vec![names::wal_subject(&self.zone)],
            storage: StorageType::File,
            num_replicas: self.replicas,
            max_message_size: (MAX_RECORD_BYTES + HEADER_ROOM) as i32,
            max_bytes: self.max_bytes.map_or(-1, limit),
            discard: DiscardPolicy::New,
            duplicate_window: self.duplicate_window,
            deny_delete: true,
            allow_direct: false,
            metadata: HashMap::from([("bsfg_zone".to_owned(), self.zone.clone())]),
            ..Default::default()
        })
    }
}

/// The zone's lease bucket.
#[derive(Debug, Clone)]
pub struct LeaseSpec {
    pub zone: String,
    /// This instance's name, unique in the zone.
    pub instance: String,
    pub replicas: usize,
    /// How long a holder that stopped renewing keeps the lease, as each observer measures it.
    pub ttl: Duration,
}

impl LeaseSpec {
    pub(super) fn kv_config(&self) -> Result<kv::Config, EngineError> {
        check_name("zone", &self.zone)?;
        check_name("instance", &self.instance)?;
        Ok(last_word_bucket(names::lease_bucket(&self.zone), self.replicas))
    }
}

/// Creates or checks the WAL stream.
pub(super) async fn wal_stream(js: &jetstream::Context, spec: &LogSpec) -> Result<stream::Stream, EngineError> {
    let config = spec.stream_config()?;
    let object = format!("stream {}", config.name);
    let stream = match create(&object, || js.create_stream(config.clone()), stream_failure).await? {
        Some(stream) => stream,
        None => existing(&object, || js.get_stream(&config.name), get_failure).await?,
    };
    check(&object, &stream.cached_info().config, spec.replicas)?;
    Ok(stream)
}

/// Creates or checks the lease bucket.
pub(super) async fn lease_bucket(js: &jetstream::Context, spec: &LeaseSpec) -> Result<kv::Store, EngineError> {
    kv_bucket(js, spec.kv_config()?, spec.replicas).await
}

/// Creates or checks the zone's members bucket: one key per instance, its last word only.
pub(super) async fn members_bucket(
    js: &jetstream::Context,
    zone: &str,
    replicas: usize,
) -> Result<kv::Store, EngineError> {
    check_name("zone", zone)?;
    kv_bucket(js, last_word_bucket(names::members_bucket(zone), replicas), replicas).await
}

/// A KV bucket of small values that keeps each key's last write only, on file storage.
fn last_word_bucket(bucket: String, replicas: usize) -> kv::Config {
    kv::Config {
        bucket,
        history: 1,
        num_replicas: replicas,
        storage: StorageType::File,
        max_value_size: 1024,
        ..Default::default()
    }
}

async fn kv_bucket(js: &jetstream::Context, config: kv::Config, replicas: usize) -> Result<kv::Store, EngineError> {
    let object = format!("bucket {}", config.bucket);
    let store = match create(&object, || js.create_key_value(config.clone()), bucket_failure).await? {
        Some(store) => store,
        None => existing(&object, || js.get_key_value(&config.bucket), kv_get_failure).await?,
    };
    let status = store.status().await.map_err(|e| provision_error(&object, e))?;
    check(&object, &status.info.config, replicas)?;
    Ok(store)
}

/// How a create failed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Failure {
    /// May succeed if tried again (no meta leader yet, an election, a timeout).
    Transient,
    /// The object exists with another configuration.
    Exists,
    Fatal,
}

/// Runs `attempt` until it succeeds, fails for good, or [`PROVISION_TIMEOUT`] passes; `None`
/// when the object exists with another configuration (the caller reads and checks it).
pub(super) async fn create<T, E, F, Fut>(
    object: &str,
    mut attempt: F,
    classify: fn(&E) -> Failure,
) -> Result<Option<T>, EngineError>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + PROVISION_TIMEOUT;
    let mut wait = Duration::from_millis(50);
    loop {
        let error = match attempt().await {
            Ok(created) => return Ok(Some(created)),
            Err(error) => error,
        };
        match classify(&error) {
            Failure::Exists => return Ok(None),
            Failure::Transient if Instant::now() + wait < deadline => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(1));
            }
            Failure::Transient | Failure::Fatal => return Err(provision_error(object, error)),
        }
    }
}

/// Reads back an object that [`create`] found existing, through the same transient refusals: the
/// lookup right after a create that raced another instance's meets the same election.
pub(super) async fn existing<T, E, F, Fut>(
    object: &str,
    attempt: F,
    classify: fn(&E) -> Failure,
) -> Result<T, EngineError>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    create(object, attempt, classify)
        .await?
        .ok_or_else(|| provision_error(object, "exists but cannot be read"))
}

pub(super) fn provision_error(object: &str, error: impl std::fmt::Display) -> EngineError {
    EngineError::Provision {
        object: object.to_owned(),
        reason: error.to_string(),
    }
}

fn stream_failure(error: &CreateStreamError) -> Failure {
    match error.kind() {
        CreateStreamErrorKind::TimedOut | CreateStreamErrorKind::JetStreamUnavailable => Failure::Transient,
        CreateStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NAME_EXIST => Failure::Exists,
        CreateStreamErrorKind::JetStream(e) => code_failure(e.error_code()),
        _ => Failure::Fatal,
    }
}

/// A server's refusal that an election or a placement in progress explains.
fn code_failure(code: ErrorCode) -> Failure {
    match code {
        ErrorCode::CLUSTER_NOT_AVAILABLE | ErrorCode::CLUSTER_NO_PEERS | ErrorCode::INSUFFICIENT_RESOURCES => {
            Failure::Transient
        }
        _ => Failure::Fatal,
    }
}

/// A stream lookup: a request without an answer (a timeout, no responders yet) may be answered
/// the next time; a stream not found is final.
fn get_failure(error: &GetStreamError) -> Failure {
    match error.kind() {
        GetStreamErrorKind::Request => Failure::Transient,
        GetStreamErrorKind::JetStream(e) => code_failure(e.error_code()),
        _ => Failure::Fatal,
    }
}

/// A bucket lookup fails as the lookup of its stream did (a KV or an object-store bucket).
pub(super) fn source_get_failure(error: &(dyn std::error::Error + 'static)) -> Failure {
    error
        .source()
        .and_then(|source| source.downcast_ref::<GetStreamError>())
        .map_or(Failure::Fatal, get_failure)
}

fn kv_get_failure(error: &KeyValueError) -> Failure {
    source_get_failure(error)
}

pub(super) fn bucket_failure(error: &CreateKeyValueError) -> Failure {
    match error.kind() {
        CreateKeyValueErrorKind::TimedOut | CreateKeyValueErrorKind::JetStream => Failure::Transient,
        CreateKeyValueErrorKind::BucketCreate => std::error::Error::source(error)
            .and_then(|source| source.downcast_ref::<CreateStreamError>())
            .map_or(Failure::Fatal, stream_failure),
        _ => Failure::Fatal,
    }
}

/// What the zone's guarantees rest on, checked on an existing stream's config.
fn check(object: &str, found: &stream::Config, replicas: usize) -> Result<(), EngineError> {
    let mismatch = |setting, found: String, expected: String| EngineError::Mismatch {
        object: object.to_owned(),
        setting,
        found,
        expected,
    };
    if found.num_replicas != replicas {
        return Err(mismatch(
            "replicas",
            found.num_replicas.to_string(),
            replicas.to_string(),
        ));
    }
    if found.storage != StorageType::File {
        return Err(mismatch("storage", format!("{:?}", found.storage), "File".into()));
    }
    if found.persist_mode == Some(PersistenceMode::Async) {
        return Err(mismatch(
            "persist_mode",
            "async".into(),
            "default (fsync before ack)".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use async_nats::jetstream::context::KeyValueErrorKind;

    use super::*;

    fn server_error(code: ErrorCode) -> jetstream::Error {
        serde_json::from_value(serde_json::json!({"code": 503, "err_code": code.0, "description": "refused"}))
            .expect("a JetStream API error")
    }

    /// A refusal in words, classified by them.
    struct Said(&'static str);

    impl std::fmt::Display for Said {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    fn by_text(error: &Said) -> Failure {
        match error.0 {
            "election" => Failure::Transient,
            "exists" => Failure::Exists,
            _ => Failure::Fatal,
        }
    }

    #[test]
    fn a_lookup_without_an_answer_or_during_an_election_is_tried_again() {
        let request = GetStreamError::new(GetStreamErrorKind::Request);
        assert_eq!(get_failure(&request), Failure::Transient);
        let election = GetStreamError::new(GetStreamErrorKind::JetStream(server_error(
            ErrorCode::CLUSTER_NOT_AVAILABLE,
        )));
        assert_eq!(get_failure(&election), Failure::Transient);
        let missing = GetStreamError::new(GetStreamErrorKind::JetStream(server_error(ErrorCode::STREAM_NOT_FOUND)));
        assert_eq!(get_failure(&missing), Failure::Fatal);

        let bucket = KeyValueError::with_source(KeyValueErrorKind::GetBucket, request);
        assert_eq!(kv_get_failure(&bucket), Failure::Transient);
        let bucket = KeyValueError::with_source(KeyValueErrorKind::GetBucket, missing);
        assert_eq!(kv_get_failure(&bucket), Failure::Fatal);
        assert_eq!(
            kv_get_failure(&KeyValueError::new(KeyValueErrorKind::InvalidStoreName)),
            Failure::Fatal
        );
    }

    #[tokio::test]
    async fn an_existing_object_is_read_back_through_transient_refusals() {
        let tries = Cell::new(0);
        let read = existing(
            "stream s",
            || {
                tries.set(tries.get() + 1);
                let answer = if tries.get() < 3 {
                    Err(Said("election"))
                } else {
                    Ok(tries.get())
                };
                async move { answer }
            },
            by_text,
        )
        .await
        .expect("read back after two refusals");
        assert_eq!(read, 3);
    }

    #[tokio::test]
    async fn a_final_refusal_of_the_read_back_names_the_object() {
        let error = existing::<u32, _, _, _>("bucket b", || async { Err(Said("gone")) }, by_text)
            .await
            .expect_err("not retried");
        assert!(
            error.to_string().contains("bucket b") && error.to_string().contains("gone"),
            "{error}"
        );
        let error = existing::<u32, _, _, _>("bucket b", || async { Err(Said("exists")) }, by_text)
            .await
            .expect_err("a lookup never finds it existing");
        assert!(error.to_string().contains("cannot be read"), "{error}");
    }
}
