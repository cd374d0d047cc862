//! One session on one connection: three stages run concurrently so a busy link is not one round
//! trip per page —
//!
//! ```text
//!  fetcher ──pages (after = previous high)──▶ inserter ──inserted-up-to──▶ confirmer
//! ```
//!
//! The fetcher asks for the next page (`after` = the previous page's `high_offset`), sized by
//! what the link carries (`PageSize`), while the inserter makes the previous one durable in the
//! forward buffer; the confirmer confirms the highest offset whose pages are all inserted (the
//! contiguous frontier), never more. A crash anywhere re-pulls from the peer's durable frontier
//! and `putIfAbsent` drops the copies; a lost connection resumes after what was inserted.
//!
//! The inserter pulls the artifacts a page references before inserting it (`artifacts`). A
//! failed insert ends the session without counting as progress, so a forward buffer that cannot
//! write backs the link off instead of reconnecting at once (pulls also pause while its storage
//! fails, see `Backpressure`). A page refused for room (`RESOURCE_EXHAUSTED`: the disk guard's
//! budget spent, typically by a page asked for just before the disk went low) is backpressure,
//! not a failure: the pipeline drops the pages in flight, waits for the disk guard's next look
//! and for room, and starts again from what was inserted, on the same session (no
//! `peer_disconnected`, the gate stays `normal`). Refusals in a row wait longer each time, up to
//! [`ROOM_WAIT_MOST`], so a page that keeps not fitting is not fetched again and again at once.
//! A page whose artifact cannot be made local while the connection works
//! ([`PullError::Unretrievable`]: the peer lost it, say) is tried again the same way, from
//! [`ARTIFACT_WAIT`] up to [`ARTIFACT_WAIT_MOST`] apart, until an operator restores it.
//!
//! A relay's store is shared by all its next hops (SPEC §4a). While it is full
//! ([`StoreRoom::Full`]) a page is cut before its first fact for a next hop whose link is down
//! ([`PullError::HopHeld`]), and the session *holds* that hop (`holding`): its pulls ask the sender
//! to leave out the facts for the hop's zones (`FetchHeld`) and confirm nothing from the first of
//! them on, so those wait at the sender; the facts for live next hops are taken, since those hops
//! drain them, so one zone offline for long does not stop the flows of the others through the
//! relay, not even the sender's facts behind the held ones. When a hold ends (the hop linked
//! again, or room: [`PullError::Released`]) the session pulls from the first fact it held and
//! stores only what the hold left there. `relay_held` and `relay_resumed` mark each hold. Where a
//! hop cannot be held (a sender of an older version refuses `FetchHeld`) the session waits at the
//! cut for the hop or for room, as before holds. Exhausted ([`StoreRoom::Exhausted`]), it pulls
//! nothing, and a page already in flight is cut before its first relayed fact.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::{Duration, Instant},
};

use bsfg_proto::{ErrorCode, FetchResponse, FetchedFact, FrameError, RpcError};
use quinn::Connection;
use tokio::sync::{mpsc, watch};

use super::{
    artifacts::Ready,
    holding::{Holds, Release},
    stored::Origins,
    PullError,
};
use crate::{
    backpressure::StoreRoom,
    events::{Direction, Hold, LinkFailure, PeerConnected, PeerDialFailed, RelayHeld, TlsHandshakeFailed},
    forward_buffer::Insert,
    peer_link::{
        page_size::{PageSize, TARGET},
        PeerLinkConfig, PeerLinkDeps,
    },
    relay::Verdict,
    transport::{address::PeerAddress, addresses::Addresses, framed, pacing::Pacer, tls},
    zone_gate,
};

/// A dial that failed: the address dialled, if the name resolved, and why.
type DialFailure = (Option<SocketAddr>, (LinkFailure, String));

/// Pages fetched ahead of the inserter.
const PIPELINE_DEPTH: usize = 2;
/// The first wait after a page refused for room: the disk guard looks every 250 ms, so by then
/// a disk gone low pauses the pulls.
const ROOM_WAIT: Duration = Duration::from_millis(300);
/// The longest wait between refusals in a row.
const ROOM_WAIT_MOST: Duration = Duration::from_secs(5);
/// The first wait before trying again a page whose artifact could not be made local.
const ARTIFACT_WAIT: Duration = Duration::from_secs(1);
/// The longest wait between such tries: as long as a reconnect's backoff at most.
const ARTIFACT_WAIT_MOST: Duration = Duration::from_secs(30);
/// How long pulls held back for room on an open connection wait before the gate is told the
/// link is up nonetheless.
const HELD_LIVE: Duration = Duration::from_secs(1);

/// What a session needs: configuration and handles, shared by the concurrent stages, and what
/// outlives one session.
pub(super) struct Session {
    pub(super) config: Arc<PeerLinkConfig>,
    pub(super) deps: PeerLinkDeps,
    /// The highest source offset inserted into the forward buffer by any session of this link
    /// (0: none yet): where the next session resumes.
    inserted: AtomicU64,
    /// Pages and artifacts pulled from the peer, paced to `max_bytes_per_second`.
    pub(super) ingress: Pacer,
    /// The address of the peer's list to dial next: moves on after a failed dial or a session
    /// that pulled nothing (an HA zone's standby refuses every call, or the instance is gone).
    pub(super) next_address: AtomicUsize,
    /// The next hops whose facts the pulls leave at the peer while this relay's store is full,
    /// and how far the pulls went (`holding`). While any is held, `inserted` stays below the
    /// first fact held.
    holds: Mutex<Holds<RelayHeld>>,
    /// The peer on this connection refused `FetchHeld` (a node of an older version): a held next
    /// hop holds the whole link there, as before destinations could be left out.
    held_refused: AtomicBool,
}

/// What becomes of a page cut before a fact for a next hop that is down.
enum Cut {
    /// The hop is held: the pulls go on past its facts.
    Held,
    /// The link waits at the cut; once the store is only full again, for the hop to be held
    /// (`then_hold`), or for its link or room.
    Wait { then_hold: bool },
}

impl Session {
    pub(super) fn new(config: Arc<PeerLinkConfig>, deps: PeerLinkDeps) -> Self {
        Self {
            ingress: Pacer::new(config.max_bytes_per_second),
            config,
            deps,
            inserted: AtomicU64::new(0),
            next_address: AtomicUsize::new(0),
            holds: Mutex::default(),
            held_refused: AtomicBool::new(false),
        }
    }

    pub(super) fn link_down(&self, reason: String) {
        self.deps.gate.do_send(zone_gate::LinkDown {
            peer: self.config.peer.clone(),
            reason,
        });
    }

    /// `None` when this node does not dial this peer. A host name is resolved first, at every
    /// dial; a name that does not resolve is a failed dial to an unreachable peer.
    pub(super) async fn dial(&self) -> Option<Result<Connection, String>> {
        let addresses = self.config.addresses.as_ref().filter(|_| self.config.dial)?;
        let next = self.next_address.load(Ordering::Relaxed);
        let address = addresses.get(next);
        let result = match self.resolve(addresses, next).await {
            Ok(remote) => self.connect(remote).await.map(|conn| (conn, remote)),
            Err(failure) => Err((None, failure)),
        };
        Some(self.dialled(address, result))
    }

    async fn resolve(&self, addresses: &Addresses, next: usize) -> Result<SocketAddr, (LinkFailure, String)> {
        let local = self
            .deps
            .endpoint
            .local_addr()
            .map_err(|e| (LinkFailure::Other, e.to_string()))?;
        addresses
            .resolve(next, local)
            .await
            .map_err(|e| (LinkFailure::Unreachable, e.to_string()))
    }

    async fn connect(&self, remote: SocketAddr) -> Result<Connection, DialFailure> {
        let config = self.deps.client_config.borrow().clone();
        let connecting = self.deps.endpoint.connect_with(config, remote, &self.config.peer);
        let connected = match connecting {
            Ok(connecting) => connecting.await.map_err(|error| self.handshake_failed(remote, &error)),
            Err(e) => Err((LinkFailure::Other, e.to_string())),
        };
        connected.map_err(|failure| (Some(remote), failure))
    }

    /// A dial whose handshake did not complete: a refused certificate counts as a TLS failure
    /// on this side too; a dial nobody answered is an unreachable peer.
    fn handshake_failed(&self, remote: SocketAddr, error: &quinn::ConnectionError) -> (LinkFailure, String) {
        self.deps.telemetry.emit(TlsHandshakeFailed {
            remote,
            direction: Direction::Outbound,
            peer: Some(&self.config.peer),
            error,
        });
        let kind = match error {
            _ if tls::handshake_alert(error).is_some() => LinkFailure::Tls,
            quinn::ConnectionError::TimedOut => LinkFailure::Unreachable,
            // A node that is stopping refuses new connections: it is as good as down.
            quinn::ConnectionError::ConnectionClosed(close)
                if close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
            {
                LinkFailure::Unreachable
            }
            _ => LinkFailure::Other,
        };
        (kind, error.to_string())
    }

    /// Reports a dial: the connection goes to the RPC server too; a failure is logged and
    /// counted with the configured address and, once resolved, the address dialled.
    fn dialled(
        &self,
        address: &PeerAddress,
        result: Result<(Connection, SocketAddr), DialFailure>,
    ) -> Result<Connection, String> {
        let peer = &self.config.peer;
        match result {
            Ok((conn, remote)) => {
                let _ = self.deps.dialed.send((conn.clone(), peer.clone()));
                self.deps.telemetry.emit(PeerConnected {
                    peer,
                    remote,
                    direction: Direction::Outbound,
                    not_after: &tls::peer_not_after(&conn),
                });
                Ok(conn)
            }
            Err((remote, (kind, reason))) => {
                // The next dial tries the next instance of an HA peer zone.
                self.next_address.fetch_add(1, Ordering::Relaxed);
                self.deps.telemetry.emit(PeerDialFailed {
                    peer,
                    address,
                    remote,
                    kind,
                    reason: &reason,
                });
                Err(format!("cannot connect to {address}: {reason}"))
            }
        }
    }

    /// The three stages of a session; returns the first failure. `progressed` is set once a
    /// page is inserted. A page refused for room starts the stages again once there is room; a
    /// page whose artifact could not be made local, after a wait. Each wait doubles while the
    /// same page fails again.
    pub(super) async fn pull(&self, conn: &Connection, progressed: &AtomicBool) -> PullError {
        let (mut room_wait, mut artifact_wait) = (ROOM_WAIT, ARTIFACT_WAIT);
        // This connection's peer may be of another version than the last one's, or another peer.
        self.held_refused.store(false, Ordering::Relaxed);
        let mut checked = false;
        loop {
            let pulled = self.lock_holds().pulled();
            let failed = self.stages(conn, progressed, &mut checked).await;
            if self.lock_holds().pulled() != pulled {
                (room_wait, artifact_wait) = (ROOM_WAIT, ARTIFACT_WAIT);
            }
            match &failed {
                PullError::HopHeld { hop, offset } => {
                    if let Cut::Wait { then_hold } = self.hold(hop, *offset) {
                        if let Err(lost) = self.until_hop(conn, hop, then_hold).await {
                            return lost;
                        }
                    }
                    continue;
                }
                PullError::Released(release) => {
                    self.release(release);
                    continue;
                }
                _ => {}
            }
            let (wait, most) = match &failed {
                PullError::Local(refused) if refused.code == ErrorCode::ResourceExhausted => {
                    (&mut room_wait, ROOM_WAIT_MOST)
                }
                PullError::Unretrievable(_) if conn.close_reason().is_none() => {
                    (&mut artifact_wait, ARTIFACT_WAIT_MOST)
                }
                _ => return failed,
            };
            tokio::select! {
                () = tokio::time::sleep(*wait) => {}
                lost = conn.closed() => return framed::StreamError::from(lost).into(),
            }
            *wait = (*wait * 2).min(most);
            if let Err(lost) = self.until_room(conn).await {
                return lost;
            }
        }
    }

    /// One run of the three stages, from where the last one inserted up to.
    async fn stages(&self, conn: &Connection, progressed: &AtomicBool, checked: &mut bool) -> PullError {
        let start = match self.resume_point(conn, checked).await {
            Ok(start) => start,
            Err(e) => return e,
        };
        // What was pulled past the facts held is not pulled again.
        let fetch_from = start.map(|inserted| self.lock_holds().resume(inserted));
        let (pages_tx, pages_rx) = mpsc::channel(PIPELINE_DEPTH);
        let (inserted_tx, inserted_rx) = watch::channel(start.unwrap_or(0));
        // Whether the inserter is storing a page: a release waits for it to be recorded. Once a
        // release is due (`releasing`), the inserter takes no further page.
        let (inserting_tx, inserting_rx) = watch::channel(false);
        let releasing = AtomicBool::new(false);
        let stages = tokio::try_join!(
            self.fetcher(conn, pages_tx, fetch_from),
            self.inserter(conn, pages_rx, inserted_tx, (&inserting_tx, &releasing), progressed),
            self.confirmer(conn, inserted_rx),
            self.until_released(inserting_rx, &releasing),
        );
        match stages {
            Err(e) => e,
            Ok(_) => PullError::Protocol("pipeline stopped"),
        }
    }

    /// Where this session starts: after what an earlier one inserted, once the peer has taken
    /// that as confirmed; from the peer's frontier if there is nothing to resume or the peer
    /// refuses it. A peer refuses an offset its running store did not serve this node (it
    /// restarted, its data was replaced, another HA instance took over): those offsets may name
    /// facts this node never received, and what the holds know is forgotten. A peer that
    /// refuses it for now (a storage fault there) is pulled from its frontier.
    ///
    /// On a new connection, what the holds know past the resume point is kept only up to the
    /// last fact a page brought, if the peer still serves that fact there ([`Holds::known_up_to`]):
    /// a peer restored from an older copy of its data took the resume point, yet numbers its
    /// new facts with offsets the holds went through.
    async fn resume_point(&self, conn: &Connection, checked: &mut bool) -> Result<Option<u64>, PullError> {
        let inserted = self.inserted.load(Ordering::Acquire);
        let resumed = match inserted {
            0 => None,
            inserted => match self.confirm_once(conn, inserted).await {
                Ok(()) => Some(inserted),
                // Not now (a storage fault over there): pulled from its frontier, duplicates
                // dropped; what the holds know is kept as far as the witness proves it.
                Err(PullError::Remote(e)) if e.retryable => None,
                Err(PullError::Remote(_)) => {
                    self.inserted.store(0, Ordering::Release);
                    self.lock_holds().reset().into_iter().for_each(RelayHeld::end);
                    None
                }
                Err(e) => return Err(e),
            },
        };
        if !*checked {
            let known = self.proven(conn, resumed.unwrap_or(0)).await?;
            self.lock_holds().known_up_to(known);
            *checked = true;
        }
        Ok(resumed)
    }

    /// How far the peer's offsets are known to name what they named: up to `resumed`, which it
    /// took, or up to the last fact a page brought past it, if the peer serves that fact there.
    async fn proven(&self, conn: &Connection, resumed: u64) -> Result<u64, PullError> {
        let Some(witness) = self.lock_holds().witness_past(resumed).cloned() else {
            return Ok(resumed);
        };
        let served = self.fact_at(conn, witness.offset).await?;
        Ok(match served {
            Some(fact) if witness.is(&fact) => witness.offset,
            _ => resumed,
        })
    }

    async fn fetcher(
        &self,
        conn: &Connection,
        pages: mpsc::Sender<FetchResponse>,
        start: Option<u64>,
    ) -> Result<(), PullError> {
        let mut after = start;
        let mut size = PageSize::new(self.config.batch_limit);
        let (held_zones, first_held) = {
            let holds = self.lock_holds();
            let first = holds.first().map(|(hop, offset)| PullError::HopHeld {
                hop: hop.to_owned(),
                offset,
            });
            (holds.zones(), first)
        };
        loop {
            self.until_room(conn).await?;
            let limit = match self.config.max_bytes_per_second {
                Some(rate) => size.capped(rate.saturating_mul(TARGET.as_secs())),
                None => size.limit(),
            };
            let asked = Instant::now();
            let (page, bytes) = match self.fetch(conn, after, limit, &held_zones).await {
                // The peer's limit is above ours, and so are its pages: ask for fewer facts.
                Err(PullError::Stream(framed::StreamError::Frame(FrameError::TooLarge { len, limit: most })))
                    if size.refused(limit, len, most) =>
                {
                    continue;
                }
                // A node of an older version does not know `FetchHeld`: the link is held instead.
                Err(PullError::Remote(e)) if e.code == ErrorCode::InvalidArgument && !held_zones.is_empty() => {
                    self.held_refused.store(true, Ordering::Relaxed);
                    return Err(first_held.unwrap_or(PullError::Protocol("fetch")));
                }
                fetched => fetched?,
            };
            size.on_page(limit, page.facts.len(), bytes, asked.elapsed());
            // The page came at the link's pace; the next one waits until the cap allows it.
            self.ingress.pace(bytes).await;
            self.deps.gate.do_send(zone_gate::Pulled {
                peer: self.config.peer.clone(),
                behind: page.facts.len() >= limit as usize,
            });
            after = Some(page.high_offset.max(after.unwrap_or(0)));
            if pages.send(page).await.is_err() {
                return Ok(());
            }
        }
    }

    /// Waits while the forward buffer is full (SPEC §5: pressure travels back to the sender's
    /// store buffer), and on a relaying node while its store is exhausted; a connection lost
    /// meanwhile still ends the session.
    async fn until_room(&self, conn: &Connection) -> Result<(), PullError> {
        let mut paused = self.deps.pulls_paused.clone();
        let mut store = self.deps.store_room.clone();
        let relays = self.config.routing.relays();
        // A switch whose sender is gone (shutdown) never holds the pull back.
        let room = async {
            loop {
                if paused.wait_for(|paused| !*paused).await.is_err() {
                    return;
                }
                let not_exhausted = |room: &StoreRoom| *room != StoreRoom::Exhausted;
                if !relays || store.wait_for(not_exhausted).await.is_err() || !*paused.borrow() {
                    return;
                }
            }
        };
        self.held(conn, room).await
    }

    fn lock_holds(&self) -> std::sync::MutexGuard<'_, Holds<RelayHeld>> {
        self.holds.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds next hop `hop`, whose fact at `offset` a page was cut before, if the store is only
    /// full and the peer can leave facts out; else the link waits at the cut.
    fn hold(&self, hop: &str, offset: u64) -> Cut {
        let mut holds = self.lock_holds();
        if self.held_refused.load(Ordering::Relaxed) {
            // Back to holding the link: nothing was confirmed past the first fact held.
            holds.release_all().into_iter().for_each(RelayHeld::end);
            return Cut::Wait { then_hold: false };
        }
        let room = *self.deps.store_room.borrow();
        if room != StoreRoom::Full {
            // Room: the wait ends at once; exhausted: it ends once the store is only full.
            return Cut::Wait { then_hold: true };
        }
        let (telemetry, peer) = (&self.deps.telemetry, &self.config.peer);
        let report = || RelayHeld::begin(telemetry, peer, hop, Hold::Destination);
        match holds.hold(hop, self.config.routing.zones_via(hop), offset, report) {
            true => Cut::Held,
            // Held already, and a fact of its zones came all the same.
            false => Cut::Wait { then_hold: false },
        }
    }

    /// Ends the holds `release` names; the pull goes back to the first fact they held.
    fn release(&self, release: &Release) {
        let reports = self.lock_holds().release(release);
        reports.into_iter().for_each(RelayHeld::end);
    }

    /// Ends the session's stages with [`PullError::Released`] once holds are to end
    /// ([`Holds::releasable`]): the store has room, or a hop held is linked again. Never while
    /// nothing is held. A page being stored is let finish first (`inserting`), so that what the
    /// pulls went through is recorded before they go back.
    async fn until_released(
        &self,
        mut inserting: watch::Receiver<bool>,
        releasing: &AtomicBool,
    ) -> Result<(), PullError> {
        if self.lock_holds().is_empty() {
            return std::future::pending().await;
        }
        let (mut store, mut linked) = (self.deps.store_room.clone(), self.deps.linked.clone());
        loop {
            let room = *store.borrow_and_update();
            let releasable = self.lock_holds().releasable(room, &linked.borrow_and_update());
            if let Some(release) = releasable {
                // The inserter stops between pages, so a busy one is waited for one page at
                // most; its end (its sender dropped) ends the session anyway.
                releasing.store(true, Ordering::Release);
                let _ = inserting.wait_for(|inserting| !*inserting).await;
                return Err(PullError::Released(release));
            }
            let changed = tokio::select! {
                changed = store.changed() => changed,
                changed = linked.changed() => changed,
            };
            if changed.is_err() {
                // Shutting down: the connection's end, or the task's, ends the session.
                return std::future::pending().await;
            }
        }
    }

    /// Waits at a cut before a fact for next hop `hop` until the store has room, or is only full
    /// and the hop is linked again (or, `then_hold`, may be held: the wait was for an exhausted
    /// store), logged once at each end.
    async fn until_hop(&self, conn: &Connection, hop: &str, then_hold: bool) -> Result<(), PullError> {
        let (mut store, mut linked) = (self.deps.store_room.clone(), self.deps.linked.clone());
        let released = async {
            loop {
                let room = *store.borrow_and_update();
                let up = linked.borrow_and_update().contains(hop);
                if room == StoreRoom::Room || (room == StoreRoom::Full && (up || then_hold)) {
                    return;
                }
                let changed = tokio::select! {
                    changed = store.changed() => changed,
                    changed = linked.changed() => changed,
                };
                if changed.is_err() {
                    // Shutting down: the connection's end, or the task's, ends the wait (returning
                    // would only cut the same page again).
                    std::future::pending::<()>().await;
                }
            }
        };
        let hold = match *self.deps.store_room.borrow() {
            // Nothing to wait for: the page is pulled again at once.
            StoreRoom::Room => return Ok(()),
            StoreRoom::Exhausted => Hold::Exhausted,
            StoreRoom::Full => Hold::Link,
        };
        let held = RelayHeld::begin(&self.deps.telemetry, &self.config.peer, hop, hold);
        let waited = self.held(conn, released).await;
        held.end();
        // The peer may take `FetchHeld` by the next hold (it was upgraded, or the refusal was
        // of a damaged request).
        self.held_refused.store(false, Ordering::Relaxed);
        waited
    }

    /// Waits for `until`, or the connection's loss; after [`HELD_LIVE`] the gate is told the
    /// link is up nonetheless (a connection the peer refuses is closed well within the wait).
    async fn held(&self, conn: &Connection, until: impl std::future::Future<Output = ()>) -> Result<(), PullError> {
        tokio::pin!(until);
        tokio::select! {
            () = &mut until => return Ok(()),
            lost = conn.closed() => return Err(framed::StreamError::from(lost).into()),
            () = tokio::time::sleep(HELD_LIVE) => {}
        }
        self.deps.gate.do_send(zone_gate::PullsHeld {
            peer: self.config.peer.clone(),
        });
        tokio::select! {
            () = until => Ok(()),
            lost = conn.closed() => Err(framed::StreamError::from(lost).into()),
        }
    }

    async fn inserter(
        &self,
        conn: &Connection,
        mut pages: mpsc::Receiver<FetchResponse>,
        inserted: watch::Sender<u64>,
        (inserting, releasing): (&watch::Sender<bool>, &AtomicBool),
        progressed: &AtomicBool,
    ) -> Result<(), PullError> {
        loop {
            if releasing.load(Ordering::Acquire) {
                // A release is due: the session ends once `until_released` sees this idle.
                return std::future::pending().await;
            }
            let Some(page) = pages.recv().await else {
                return Ok(());
            };
            inserting.send_replace(true);
            if let Some(last) = page.facts.last() {
                self.lock_holds().witnessed(last);
            }
            let cut = self.insert(conn, page.facts).await?;
            // Cut before a fact whose artifact waits: what came before it is in, and stays so.
            // Nothing from a held fact on counts as inserted: the peer keeps those facts.
            let reached = cut.as_ref().map_or(page.high_offset, |(offset, _)| offset - 1);
            let high = {
                let mut holds = self.lock_holds();
                holds.went_through(reached);
                holds.cap(reached)
            };
            inserting.send_replace(false);
            progressed.store(true, Ordering::Relaxed);
            self.inserted.fetch_max(high, Ordering::AcqRel);
            inserted.send_if_modified(|inserted| {
                let moved = high > *inserted;
                *inserted = (*inserted).max(high);
                moved
            });
            if let Some((_, failure)) = cut {
                return Err(failure);
            }
        }
    }

    async fn confirmer(&self, conn: &Connection, mut inserted: watch::Receiver<u64>) -> Result<(), PullError> {
        let mut confirmed = *inserted.borrow_and_update();
        while inserted.changed().await.is_ok() {
            let high = *inserted.borrow_and_update();
            if high > confirmed {
                self.confirm(conn, high).await?;
                confirmed = high;
            }
        }
        Ok(())
    }

    /// Sorts a page by the routing rules and stores, in one commit (in parts of 1 MiB, one after
    /// the other, in an HA zone: `Journal::insert_page`), the facts delivered here
    /// and those relayed toward their next hop, once their artifacts are local; any other fact
    /// is logged and counted, and skipped (it is confirmed with the page so it cannot block the
    /// link).
    ///
    /// A page cut before a fact whose artifact cannot be made local now, or before a fact for a
    /// next hop held while the store is full ([`Session::held_hop`]), is stored up to there; the
    /// offset of that fact and why come back, for the session to try it again later. Facts
    /// pulled again after a hold ended that were taken already ([`Holds::taken`]) are dropped
    /// first: only what the hold left is stored.
    async fn insert(
        &self,
        conn: &Connection,
        mut facts: Vec<FetchedFact>,
    ) -> Result<Option<(u64, PullError)>, PullError> {
        {
            let holds = self.lock_holds();
            facts.retain(|fact| !holds.taken(fact.offset, &fact.message.envelope.to_zone));
        }
        let held = self.held_hop(&facts);
        if let Some((offset, _)) = &held {
            facts.retain(|fact| fact.offset < *offset);
        }
        let sorted = self.config.routing.sort(&self.config.peer, facts);
        self.report_refused(&sorted);
        let Ready {
            sorted,
            holds: _holds,
            cut,
        } = self.with_artifacts(conn, sorted).await?;
        // Cut for an artifact before the held fact, or at it.
        let cut = cut.or(held.map(|(offset, hop)| (offset, PullError::HopHeld { hop, offset })));
        if sorted.deliver.is_empty() && sorted.relay.is_empty() {
            return Ok(cut);
        }
        let origins = Origins::of(&sorted);
        let insert = Insert {
            facts: sorted.deliver,
            relayed: sorted.relay,
        };
        let sent = self.deps.forward.send(insert).await;
        let outcome = sent
            .map_err(|e| PullError::Local(RpcError::unavailable(e.to_string())))?
            .map_err(PullError::Local)?;
        self.report_stored(&outcome, &origins);
        Ok(cut)
    }

    /// While this relay's store is full: the first fact of the page relayed to a next hop whose
    /// link is down (to any next hop, once it is exhausted), its offset and that hop.
    fn held_hop(&self, facts: &[FetchedFact]) -> Option<(u64, String)> {
        let routing = &self.config.routing;
        let room = *self.deps.store_room.borrow();
        if !routing.relays() || room == StoreRoom::Room {
            return None;
        }
        // A copy: the gate's updates must not wait while the page is judged.
        let linked = self.deps.linked.borrow().clone();
        let held = |hop: &str| room == StoreRoom::Exhausted || !linked.contains(hop);
        facts
            .iter()
            .find_map(|fact| match routing.judge(&self.config.peer, &fact.message.envelope) {
                Verdict::Relay { next_hop } if held(next_hop) => Some((fact.offset, next_hop.to_owned())),
                _ => None,
            })
    }
}
