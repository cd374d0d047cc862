//! Where is my fact? (`bsfg trace`, `GET /v1/trace/{from_zone}/{message_id}`): what this node
//! knows of one fact, from its idempotency indexes, logs and cursors, read on the blocking pool.
//!
//! - A fact produced here (`from_zone` is this zone) is looked up in the store buffer by its
//!   `message_id`: its offset, destination, the peer that pulls it (its next hop), when it was
//!   stored, and whether that peer has confirmed it (its frontier is at or past the offset).
//! - A fact from another zone is looked up in the forward buffer by `(from_zone, message_id)`:
//!   its offset here and in the sender's store buffer, when it arrived, and which consumers (with
//!   a cursor, or seen fetching) have confirmed it. The dedupe window outlives the log entry, so a fact reclaimed after every
//!   consumer confirmed it (or expired) is still found, marked not retained.
//! - A fact from another zone that is not in the forward buffer may be in the store buffer,
//!   relayed here on its way (SPEC §4a): it is looked up there by `(from_zone, message_id)`,
//!   with its hops so far.
//! - A fact of the store buffer reclaimed early for room (after its peer confirmed it) is found
//!   by its id alone, which the store's dedupe window keeps for `store.retention`.
//! - Anything else is unknown here: never appended here, not arrived yet, or deleted from the
//!   store buffer (past its retention, or lost — `fact_expired` / `fact_dropped` in the log
//!   name it).
//!
//! Run against each zone's node, the answers trace a fact from its producer to its consumers.

use bsfg_proto::RpcError;

use std::sync::Arc;

use crate::{
    forward_buffer::{consumer_cursors, Seen},
    journal::Journal,
    relay::Routing,
    storage::{CursorKey, Index, Log, Storage, StorageError},
};

/// A fact in this node's store buffer: produced here, or relayed here on its way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub offset: u64,
    pub to_zone: String,
    /// The peer that pulls it: `to_zone`, or the next hop toward it.
    pub peer: String,
    /// The zones that relayed it so far, this one last (empty for a fact produced here).
    pub hops: Vec<String>,
    pub stored_at_unix_ms: u64,
    /// The peer's frontier in this store buffer.
    pub frontier: u64,
}

impl Stored {
    /// Whether the peer confirmed it (it can then be reclaimed at any time).
    pub fn confirmed(&self) -> bool {
        self.frontier >= self.offset
    }
}

/// A fact in this node's forward buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub offset: u64,
    /// Its offset in the sender's store buffer; `None` once the log entry is reclaimed.
    pub source_offset: Option<u64>,
    /// When it arrived here; `None` once it left the dedupe window's record too.
    pub received_at_unix_ms: Option<u64>,
    /// Whether its log entry is still retained (consumers can still fetch it).
    pub retained: bool,
    /// Every known consumer with its cursor: those at or past `offset` have confirmed it.
    pub consumers: Vec<(String, u64)>,
}

/// What this node knows of one fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Stored(Stored),
    Received(Received),
    /// A fact of the store buffer whose log entry was reclaimed early (confirmed by the peer
    /// that pulls it, deleted for room), whose id the store's dedupe window still holds.
    Reclaimed {
        offset: u64,
    },
    Unknown,
}

/// Traces facts on one node; cheap to clone.
#[derive(Clone)]
pub struct Tracer {
    routing: Arc<Routing>,
    journal: Journal,
    seen: Seen,
}

impl Tracer {
    pub fn new(routing: Arc<Routing>, journal: Journal, seen: Seen) -> Self {
        Self { routing, journal, seen }
    }

    /// What this node knows of the fact `message_id` produced in `from_zone`.
    pub async fn trace(&self, from_zone: String, message_id: String) -> Result<Found, RpcError> {
        let (storage, cursors) = (self.journal.storage(), self.journal.cursors());
        let consumers: Vec<(String, u64)> = consumer_cursors(&self.journal, &self.seen).into_iter().collect();
        let routing = self.routing.clone();
        let found = tokio::task::spawn_blocking(move || {
            if from_zone == routing.zone {
                return stored(&*storage, &routing, ("", &message_id), &cursors);
            }
            match received(&*storage, &from_zone, &message_id, consumers)? {
                Found::Unknown => stored(&*storage, &routing, (&from_zone, &message_id), &cursors),
                found => Ok(found),
            }
        });
        found
            .await
            .map_err(|e| RpcError::internal(format!("trace task failed: {e}")))?
            .map_err(|e| RpcError::unavailable(e.to_string()))
    }
}

type Cursors = std::collections::HashMap<CursorKey, u64>;

/// A fact of the store buffer by its key: `("", message_id)` for one produced here,
/// `(from_zone, message_id)` for one relayed here.
fn stored(
    storage: &dyn Storage,
    routing: &Routing,
    key: (&str, &str),
    cursors: &Cursors,
) -> Result<Found, StorageError> {
    let Some(Some(idem)) = storage.lookup(Index::Store, &[key])?.pop() else {
        return Ok(Found::Unknown);
    };
    let Some(record) = storage.read_entry(Log::Store, idem.offset)? else {
        return Ok(Found::Reclaimed { offset: idem.offset });
    };
    let envelope = record.message()?.envelope;
    // The peer it waits for as it was stored (a route or a peer changed since is not its way);
    // the next hop configured now only if no peer's index holds it.
    let peer = match stored_for(storage, idem.offset)? {
        Some(peer) => peer,
        None => routing
            .next_hop(&envelope.to_zone)
            .unwrap_or(&envelope.to_zone)
            .to_owned(),
    };
    let frontier = cursors.get(&CursorKey::Peer(peer.clone())).copied().unwrap_or(0);
    Ok(Found::Stored(Stored {
        offset: idem.offset,
        to_zone: envelope.to_zone,
        peer,
        hops: envelope.hops,
        stored_at_unix_ms: record.stored_at_unix_ms,
        frontier,
    }))
}

/// The peer whose index holds the store entry at `offset`: the peer it was stored for.
fn stored_for(storage: &dyn Storage, offset: u64) -> Result<Option<String>, StorageError> {
    for zone in storage.store_zones()? {
        let held = storage.read_store(&zone, offset - 1, offset, 1)?;
        if held.first().is_some_and(|record| record.offset == offset) {
            return Ok(Some(zone));
        }
    }
    Ok(None)
}

fn received(
    storage: &dyn Storage,
    from_zone: &str,
    message_id: &str,
    consumers: Vec<(String, u64)>,
) -> Result<Found, StorageError> {
    let Some(Some(idem)) = storage.lookup(Index::Forward, &[(from_zone, message_id)])?.pop() else {
        return Ok(Found::Unknown);
    };
    let record = storage.read_entry(Log::Forward, idem.offset)?;
    let window = storage.read_window(Log::Forward, idem.offset.saturating_sub(1), 1)?;
    let arrived = window.first().filter(|w| w.offset == idem.offset);
    Ok(Found::Received(Received {
        offset: idem.offset,
        source_offset: record.as_ref().map(|r| r.source_offset),
        received_at_unix_ms: record
            .as_ref()
            .map(|r| r.stored_at_unix_ms)
            .or(arrived.map(|w| w.received_at_unix_ms)),
        retained: record.is_some(),
        consumers,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        journal::{JournalConfig, Prepared},
        testkit::{message, page, Fixture, ZONE},
    };

    #[tokio::test]
    async fn a_fact_is_found_where_it_is_and_unknown_elsewhere() {
        let fixture = Fixture::open(JournalConfig::default());
        let routing = Routing {
            zone: ZONE.to_owned(),
            peers: ["enterprise".to_owned(), "plant-b".to_owned()].into(),
            ..Routing::default()
        };
        let tracer = Tracer::new(Arc::new(routing), fixture.journal.clone(), Seen::default());
        let ack = fixture
            .append(message(ZONE, "enterprise", "batch-42"))
            .await
            .expect("append");
        let trace = |from: &str, id: &str| tracer.trace(from.to_owned(), id.to_owned());
        let Found::Stored(stored) = trace(ZONE, "batch-42").await.expect("trace") else {
            panic!("the appended fact is in the store buffer")
        };
        assert_eq!((stored.offset, stored.to_zone.as_str()), (ack.offset, "enterprise"));
        assert!(!stored.confirmed(), "the peer has not confirmed it");
        let peer = CursorKey::Peer("enterprise".into());
        fixture.journal.confirm(peer, ack.offset).await.expect("confirm");
        let Found::Stored(stored) = trace(ZONE, "batch-42").await.expect("trace") else {
            panic!("still stored")
        };
        assert!(stored.confirmed(), "confirmed once the frontier passed it");

        fixture
            .journal
            .insert(page("enterprise", 17, &["order-1", "order-2"]))
            .await
            .expect("insert");
        let mes = CursorKey::Consumer("mes".into());
        fixture.journal.confirm(mes, 1).await.expect("confirm");
        let Found::Received(received) = trace("enterprise", "order-2").await.expect("trace") else {
            panic!("the pulled fact is in the forward buffer")
        };
        assert_eq!((received.offset, received.source_offset), (2, Some(18)));
        assert!(received.retained && received.received_at_unix_ms.is_some());
        assert_eq!(
            received.consumers,
            [("mes".to_owned(), 1)],
            "mes has not confirmed it yet"
        );

        let mut on_its_way = message("enterprise", "plant-b", "order-3");
        on_its_way.envelope.hops.push(ZONE.into());
        let relayed = Prepared::new(on_its_way).expect("prepare").via("plant-b");
        fixture
            .journal
            .insert_page(Vec::new(), vec![relayed])
            .await
            .expect("relay");
        let Found::Stored(stored) = trace("enterprise", "order-3").await.expect("trace") else {
            panic!("the relayed fact is in the store buffer")
        };
        assert_eq!(
            (stored.peer.as_str(), stored.hops.as_slice()),
            ("plant-b", &[ZONE.to_owned()][..])
        );

        // Confirmed and reclaimed for room: its id is still known, its entry is not.
        let planned = crate::journal::DeletePlan {
            store: vec![crate::storage::StoreDelete {
                offset: ack.offset,
                peer: "enterprise".into(),
                origin: None,
                to_zone: "enterprise".into(),
                message_id: "batch-42".into(),
                reason: crate::storage::DeleteReason::Reclaimed,
            }],
            forward: Vec::new(),
        };
        fixture.journal.delete(planned).await.expect("reclaim");
        assert_eq!(
            trace(ZONE, "batch-42").await.expect("trace"),
            Found::Reclaimed { offset: ack.offset }
        );

        for (from, id) in [
            (ZONE, "nothing"),
            ("enterprise", "batch-42"),
            ("plant-b", "order-2"),
            (ZONE, "order-3"),
        ] {
            assert_eq!(trace(from, id).await.expect("trace"), Found::Unknown, "{from}/{id}");
        }
    }
}
