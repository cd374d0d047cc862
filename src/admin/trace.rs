//! `GET /v1/trace/{from_zone}/{message_id}` and what `bsfg trace` prints: where one fact is on
//! this node ([`Trace`]). `found` is `stored` (in the store buffer: produced here, or relayed
//! here on its way; `stored` says where it goes, through which next hop, with which hops so far,
//! and whether that next hop confirmed it), `received` (in the forward buffer:
//! pulled from `from_zone`; `received` says which consumers confirmed it), `reclaimed` (stored
//! here, confirmed, and deleted early for room: only its id and offset are left), or `unknown`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{web, HttpResponse};
use bsfg_actors::{Found, Received, Stored};
use serde::{Deserialize, Serialize};

use super::{operator::Refusal, AdminDeps, Started};

/// What one node knows of one fact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub zone: String,
    pub from_zone: String,
    pub message_id: String,
    /// `stored`, `received`, `reclaimed` (a store fact deleted early for room, its id still
    /// known) or `unknown`.
    pub found: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<StoredTrace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<ReceivedTrace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredTrace {
    pub offset: u64,
    pub to_zone: String,
    /// The peer that pulls it: `to_zone`, or the next hop of the route toward it.
    #[serde(default)]
    pub next_hop: String,
    /// The zones that relayed it so far, this one last; empty for a fact produced here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hops: Vec<String>,
    /// RFC 3339, ms.
    pub stored_at: String,
    pub age_seconds: f64,
    /// Whether `next_hop` confirmed it (its frontier is at or past `offset`).
    pub confirmed_by_peer: bool,
    pub frontier: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceivedTrace {
    pub offset: u64,
    pub source_offset: Option<u64>,
    pub received_at: Option<String>,
    pub age_seconds: Option<f64>,
    /// Whether consumers can still fetch it (its log entry is not reclaimed).
    pub retained: bool,
    pub consumers: Vec<ConsumerTrace>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumerTrace {
    pub name: String,
    pub cursor: u64,
    pub confirmed: bool,
}

const UNKNOWN_NOTE: &str = "not in this node's buffers: never appended here, not arrived yet, or deleted \
(reclaimed after confirmation, or lost: look for fact_expired or fact_dropped with this message_id in the log)";

impl Trace {
    pub fn new(zone: &str, from_zone: String, message_id: String, found: Found, now: SystemTime) -> Self {
        let mut trace = Self {
            zone: zone.to_owned(),
            from_zone,
            message_id,
            found: "unknown".into(),
            stored: None,
            received: None,
            note: None,
        };
        match found {
            Found::Stored(s) => (trace.found, trace.stored) = ("stored".into(), Some(stored(s, now))),
            Found::Received(r) => (trace.found, trace.received) = ("received".into(), Some(received(r, now))),
            Found::Reclaimed { offset } => {
                trace.found = "reclaimed".into();
                trace.note = Some(format!(
                    "stored here at offset {offset}, confirmed by the peer that pulls it and reclaimed \
                     early to make room; its id stays known for store.retention, so a retry is a duplicate"
                ));
            }
            Found::Unknown => trace.note = Some(UNKNOWN_NOTE.into()),
        }
        trace
    }
}

fn at(unix_ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(unix_ms)
}

fn age(unix_ms: u64, now: SystemTime) -> f64 {
    now.duration_since(at(unix_ms)).unwrap_or_default().as_secs_f64()
}

/// RFC 3339 for a time read from storage; one past the year 9999 (a damaged record) cannot be
/// written so, and is shown in milliseconds rather than failing the request.
fn rfc3339(unix_ms: u64) -> String {
    use std::fmt::Write;
    let mut text = String::new();
    match write!(text, "{}", humantime::format_rfc3339_millis(at(unix_ms))) {
        Ok(()) => text,
        Err(_) => format!("{unix_ms} ms after the Unix epoch"),
    }
}

fn stored(s: Stored, now: SystemTime) -> StoredTrace {
    StoredTrace {
        offset: s.offset,
        confirmed_by_peer: s.confirmed(),
        to_zone: s.to_zone,
        next_hop: s.peer,
        hops: s.hops,
        stored_at: rfc3339(s.stored_at_unix_ms),
        age_seconds: age(s.stored_at_unix_ms, now),
        frontier: s.frontier,
    }
}

fn received(r: Received, now: SystemTime) -> ReceivedTrace {
    let consumers = r
        .consumers
        .into_iter()
        .map(|(name, cursor)| ConsumerTrace {
            name,
            cursor,
            confirmed: cursor >= r.offset,
        })
        .collect();
    ReceivedTrace {
        offset: r.offset,
        source_offset: r.source_offset,
        received_at: r.received_at_unix_ms.map(rfc3339),
        age_seconds: r.received_at_unix_ms.map(|ms| age(ms, now)),
        retained: r.retained,
        consumers,
    }
}

pub(super) async fn trace(
    path: web::Path<(String, String)>,
    running: Started,
    state: web::Data<AdminDeps>,
) -> HttpResponse {
    let (from_zone, message_id) = path.into_inner();
    match running.node.tracer.trace(from_zone.clone(), message_id.clone()).await {
        Ok(found) => HttpResponse::Ok().json(Trace::new(&state.zone, from_zone, message_id, found, SystemTime::now())),
        Err(error) => Refusal::of(error).response(),
    }
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn times_past_the_year_9999_are_shown_not_fatal() {
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(u64::MAX), format!("{} ms after the Unix epoch", u64::MAX));
    }
}
