//! `FetchFacts` with long-poll, for both buffers: a peer reads the store buffer (the facts
//! addressed to it, after its frontier), a consumer the forward buffer (after its cursor). Which
//! log, which reader and which committed-high watch follow from the reader's [`CursorKey`], so the
//! two buffers share this one path. Pages carry the messages as they were stored
//! ([`EncodedPage`]): nothing is decoded to be encoded again.
//!
//! Reads run on tokio's blocking pool, never on an actix arbiter. When nothing is ready the
//! fetch waits on the buffer's committed-high-offset watch until it moves or `max_wait` passes;
//! how long it waited is returned with the page ([`Served`]), so the call's latency metric can
//! measure the work and leave the wait out (SPEC §11).
//!
//! Every read's outcome goes to the node's storage health. A read that meets damaged data is
//! never answered with what could be read around it: the damaged entries are located, reported
//! (`storage_damaged`, the node turns unready) and the reader gets `UNAVAILABLE` naming them,
//! until an operator accepts the loss.

use std::{future::Future, sync::Arc, time::Duration};

use bsfg_proto::{codec, EncodedFact, EncodedPage, RpcError};
use tokio::{sync::watch, time::Instant};

use crate::{
    events::{Damage, StorageHealth, StorageOp},
    journal::Journal,
    storage::{CursorKey, Log, LogRecord, Storage, StorageError},
};

/// The most facts one page may hold, whatever the caller asks.
pub const MAX_PAGE: u32 = 10_000;
/// The longest a fetch waits for its first fact, in milliseconds: longer asks are cut to it, and
/// `replication.max_wait_ms` may not ask more.
pub const MAX_WAIT_MS: u32 = 60_000;

/// What a reader asks for: at most `limit` facts after `after` (or after its confirmed cursor),
/// waiting up to `max_wait` for the first, leaving out the facts for `held_zones` (a relay's
/// `FetchHeld`; empty for everyone else).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub max_wait: Duration,
    pub after: Option<u64>,
    pub held_zones: Vec<String>,
}

/// A page and how long the fetch waited for its first fact (zero when one was ready).
#[derive(Debug)]
pub struct Served {
    pub page: EncodedPage,
    pub waited: Duration,
    /// More facts were there to serve: the page is full (its limit, or at most [`MAX_PAGE`]) or
    /// was cut by its byte budget. What a peer's gate counts as a backlog.
    pub more: bool,
}

/// Where a reader's pages come from: the store log for a peer, the forward log for a consumer.
#[derive(Clone)]
struct Source {
    storage: Arc<dyn Storage>,
    health: StorageHealth,
    /// The peer, for the store log.
    peer: Option<String>,
    /// Who reads, for reports.
    reader: String,
}

impl Source {
    fn log(&self) -> Log {
        match self.peer {
            Some(_) => Log::Store,
            None => Log::Forward,
        }
    }

    /// Reads `(after, upto]`, at most `limit` entries.
    fn read(&self, after: u64, upto: u64, limit: usize) -> Result<Vec<LogRecord>, StorageError> {
        match &self.peer {
            Some(peer) => self.storage.read_store(peer, after, upto, limit),
            None => self.storage.read_forward(after, upto, limit),
        }
    }

    /// The read on the blocking pool, its outcome reported; damage is located and reported too.
    async fn read_reported(&self, after: u64, upto: u64, limit: usize) -> Result<Vec<LogRecord>, RpcError> {
        let source = self.clone();
        let read = tokio::task::spawn_blocking(move || source.read(after, upto, limit))
            .await
            .map_err(|e| RpcError::internal(format!("read task failed: {e}")))?;
        match read {
            Ok(records) => {
                self.health.succeeded(StorageOp::Read);
                Ok(records)
            }
            Err(error) if error.is_damage() => Err(self.damaged(after, upto, limit, error).await),
            Err(error) => {
                self.health.failed(StorageOp::Read, &error);
                Err(RpcError::unavailable(error.to_string()))
            }
        }
    }

    /// Locates the damaged entries among `(after, upto]`, reports them, and says so to the reader.
    async fn damaged(&self, after: u64, upto: u64, limit: usize, error: StorageError) -> RpcError {
        let source = self.clone();
        let log = self.log();
        let located = tokio::task::spawn_blocking(move || {
            source
                .storage
                .find_damage(log, source.peer.as_deref(), after, upto, limit)
        })
        .await;
        let offsets = match located {
            Ok(Ok(offsets)) => offsets,
            _ => Vec::new(),
        };
        let last = offsets.last().copied().unwrap_or(upto).max(after + 1);
        let damage = Damage {
            log,
            reader: self.reader.clone(),
            first: after + 1,
            last,
            offsets,
            error: error.to_string(),
        };
        let message = format!(
            "stored data is damaged: {} buffer offsets {} cannot be read ({}); they are not served until an \
             operator accepts the loss (bsfg storage accept-loss)",
            log.as_str(),
            damage.ranges(),
            damage.error
        );
        self.health.damaged(damage);
        RpcError::unavailable(message)
    }
}

/// One page request against a buffer.
struct Page {
    after: u64,
    limit: u32,
    max_wait: Duration,
    /// Frame budget: a page stops before its facts would exceed this many bytes.
    max_bytes: usize,
    /// Destinations whose facts the page leaves out.
    held_zones: Vec<String>,
}

/// The page `request` asks of the reader `cursor` names; a page stops before its facts exceed
/// `max_bytes`. The cursor is read now; the returned future does the reading and the waiting.
pub fn fetch(
    journal: &Journal,
    cursor: CursorKey,
    request: PageRequest,
    max_bytes: usize,
) -> impl Future<Output = Result<Served, RpcError>> + 'static {
    fetch_until(journal, cursor, request, max_bytes, std::future::pending())
}

/// [`fetch`], whose wait for a first fact also ends, with an empty page, once `until` completes
/// (a consumer's long-poll when the node drains: the drain would otherwise wait out the poll).
pub fn fetch_until(
    journal: &Journal,
    cursor: CursorKey,
    request: PageRequest,
    max_bytes: usize,
    until: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = Result<Served, RpcError>> + 'static {
    let page = Page {
        after: request.after.unwrap_or_else(|| journal.cursor(&cursor)),
        limit: request.limit,
        max_wait: request.max_wait,
        max_bytes,
        held_zones: request.held_zones,
    };
    let (high, peer, reader) = match cursor {
        CursorKey::Peer(peer) => (journal.store_high(), Some(peer.clone()), format!("peer:{peer}")),
        CursorKey::Consumer(name) => (journal.forward_high(), None, name),
    };
    let source = Source {
        storage: journal.storage(),
        health: journal.health().clone(),
        peer,
        reader,
    };
    wait_for_page(high, source, page, until)
}

/// Reads a page after `page.after`, waiting up to `page.max_wait` for the first fact, or until
/// `until` completes.
async fn wait_for_page(
    mut high: watch::Receiver<u64>,
    source: Source,
    page: Page,
    until: impl Future<Output = ()>,
) -> Result<Served, RpcError> {
    tokio::pin!(until);
    let deadline = Instant::now() + page.max_wait;
    let limit = page.limit.clamp(1, MAX_PAGE) as usize;
    let mut waited = Duration::ZERO;
    let mut after = page.after;
    loop {
        let upto = *high.borrow_and_update();
        let records = source.read_reported(after, upto, limit).await?;
        if !records.is_empty() {
            let (records, upto, full) = leave_out(records, &page.held_zones, upto.max(after), limit);
            if !records.is_empty() || full {
                let (page, more) = into_page(records, upto, limit, page.max_bytes);
                // A full read of held facts only is complete up to its last: the reader asks after it.
                return Ok(Served {
                    page,
                    waited,
                    more: more || full,
                });
            }
            // Held facts only, up to `upto`: nothing for this reader yet.
            after = upto;
        }
        // Nothing for this reader up to `upto`: the empty page is complete up to there.
        let wait_started = Instant::now();
        let woken = tokio::select! {
            woken = tokio::time::timeout_at(deadline, high.changed()) => matches!(woken, Ok(Ok(()))),
            () = &mut until => false,
        };
        waited += wait_started.elapsed();
        if Instant::now() >= deadline || !woken {
            let page = EncodedPage {
                facts: Vec::new(),
                high_offset: upto.max(after),
            };
            return Ok(Served {
                page,
                waited,
                more: false,
            });
        }
    }
}

/// Leaves the facts for `held` out of `records`, read up to `upto` at most `limit` of them: what is
/// kept, what it is complete up to (the last entry read when the read was full), and whether the
/// read was full (more may be there). A record whose destination cannot be read is kept, for the
/// reader to judge.
fn leave_out(records: Vec<LogRecord>, held: &[String], upto: u64, limit: usize) -> (Vec<LogRecord>, u64, bool) {
    if held.is_empty() {
        return (records, upto, false);
    }
    let full = records.len() >= limit;
    let upto = match records.last() {
        Some(last) if full => last.offset,
        _ => upto,
    };
    let held = |record: &LogRecord| codec::to_zone_of(&record.encoded).is_ok_and(|to| held.iter().any(|z| z == to));
    let kept = records.into_iter().filter(|record| !held(record)).collect();
    (kept, upto, full)
}

/// Builds the page from the stored encodings as they are: `high_offset` is `upto` when every entry
/// up to it is in the page, else the last entry included (page full, or frame budget reached);
/// and whether more facts were there to serve (full or cut).
fn into_page(records: Vec<LogRecord>, upto: u64, limit: usize, max_bytes: usize) -> (EncodedPage, bool) {
    let full = records.len() >= limit;
    let mut facts = Vec::with_capacity(records.len());
    let mut bytes = 0usize;
    for record in records {
        bytes += record.encoded.len() + 16;
        if bytes > max_bytes && !facts.is_empty() {
            let high_offset = facts.last().map_or(0, |f: &EncodedFact| f.offset);
            return (EncodedPage { facts, high_offset }, true);
        }
        facts.push(EncodedFact {
            offset: record.offset,
            message: record.encoded,
        });
    }
    let high_offset = match (full, facts.last()) {
        (true, Some(last)) => last.offset,
        _ => upto,
    };
    (EncodedPage { facts, high_offset }, full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        journal::{AppendMode, JournalConfig, Prepared},
        testkit::{faults::Op, message, page, Fixture, ZONE},
    };

    fn request(after: Option<u64>, max_wait: Duration) -> PageRequest {
        PageRequest {
            limit: 10,
            max_wait,
            after,
            ..PageRequest::default()
        }
    }

    fn offsets(page: &EncodedPage) -> Vec<u64> {
        page.facts.iter().map(|f| f.offset).collect()
    }

    #[tokio::test]
    async fn a_relay_holding_destinations_gets_pages_without_their_facts() {
        let fixture = Fixture::open(JournalConfig::default());
        // Facts for two zones beyond the peer `idmz`, which pulls them all.
        let to = [
            "plant-a", "plant-b", "plant-a", "plant-b", "plant-b", "plant-a", "plant-a",
        ];
        let facts = to
            .iter()
            .enumerate()
            .map(|(i, to)| Prepared::new(message(ZONE, to, &format!("m{}", i + 1))).map(|p| p.via("idmz")))
            .collect::<Result<Vec<_>, _>>()
            .expect("prepare");
        fixture
            .journal
            .append(facts, AppendMode::EachAlone)
            .await
            .expect("append");
        let journal = &fixture.journal;
        let holding = |after, limit| PageRequest {
            limit,
            after: Some(after),
            held_zones: vec!["plant-a".into()],
            ..PageRequest::default()
        };
        let peer = || CursorKey::Peer("idmz".into());

        let served = fetch(journal, peer(), holding(0, 10), 1 << 20).await.expect("fetch");
        assert_eq!(offsets(&served.page), [2, 4, 5], "plant-b's facts only");
        assert_eq!(
            (served.page.high_offset, served.more),
            (7, false),
            "complete up to the end"
        );

        let served = fetch(journal, peer(), holding(0, 3), 1 << 20).await.expect("fetch");
        assert_eq!(offsets(&served.page), [2], "of the three facts read");
        assert_eq!(
            (served.page.high_offset, served.more),
            (3, true),
            "complete up to the last fact read, not beyond"
        );

        let served = fetch(journal, peer(), holding(5, 2), 1 << 20).await.expect("fetch");
        assert!(served.page.facts.is_empty(), "{:?}", offsets(&served.page));
        assert_eq!(
            (served.page.high_offset, served.more),
            (7, true),
            "a full read of held facts only moves the reader past them at once"
        );

        // A read of held facts only, not full, is nothing yet: the fetch waits for the next commit.
        let waiting = fetch(
            journal,
            peer(),
            PageRequest {
                max_wait: Duration::from_secs(10),
                ..holding(5, 10)
            },
            1 << 20,
        );
        let waiting = tokio::spawn(waiting);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "it waits");
        let next = Prepared::new(message(ZONE, "plant-b", "m8"))
            .expect("prepare")
            .via("idmz");
        journal.append(vec![next], AppendMode::EachAlone).await.expect("append");
        let served = waiting.await.expect("join").expect("fetch");
        assert_eq!(offsets(&served.page), [8], "the next fact for the reader");

        let all = fetch(journal, peer(), request(Some(0), Duration::ZERO), 1 << 20)
            .await
            .expect("fetch");
        assert_eq!(
            offsets(&all.page),
            [1, 2, 3, 4, 5, 6, 7, 8],
            "nothing is held without asking"
        );
    }

    #[tokio::test]
    async fn the_cursor_chooses_the_buffer_the_reader_and_where_the_page_starts() {
        let fixture = Fixture::open(JournalConfig::default());
        for (to, id) in [
            ("enterprise", "e1"),
            ("plant-b", "b1"),
            ("enterprise", "e2"),
            ("enterprise", "e3"),
        ] {
            fixture.append(message(ZONE, to, id)).await.expect("append");
        }
        let journal = &fixture.journal;
        journal
            .insert(page("enterprise", 1, &["x", "y"]))
            .await
            .expect("insert");
        let peer = || CursorKey::Peer("enterprise".into());
        journal.confirm(peer(), 1).await.expect("confirm");

        let pulled = fetch(journal, peer(), request(None, Duration::ZERO), 1 << 20)
            .await
            .expect("fetch")
            .page;
        assert_eq!(
            offsets(&pulled),
            [3, 4],
            "the peer's facts after its frontier, from the store log"
        );
        assert_eq!(pulled.high_offset, 4);
        let pipelined = fetch(journal, peer(), request(Some(3), Duration::ZERO), 1 << 20)
            .await
            .expect("fetch")
            .page;
        assert_eq!(offsets(&pipelined), [4], "after `after`, not after the cursor");

        let consumer = CursorKey::Consumer("mes".into());
        let consumed = fetch(journal, consumer, request(None, Duration::ZERO), 1 << 20)
            .await
            .expect("fetch")
            .page;
        assert_eq!(offsets(&consumed), [1, 2], "a consumer reads the forward log");
    }

    /// Whether more facts were there is what a peer's gate counts as a backlog: a full page, one
    /// cut by its byte budget (large facts), or a limit above [`MAX_PAGE`] met at `MAX_PAGE`.
    #[tokio::test]
    async fn a_page_says_whether_more_facts_were_there() {
        let fixture = Fixture::open(JournalConfig::default());
        for i in 0..4 {
            let mut fact = message(ZONE, "enterprise", &format!("f{i}"));
            fact.fact.object_json = format!("\"{}\"", "x".repeat(1_000));
            fixture.append(fact).await.expect("append");
        }
        let journal = &fixture.journal;
        let peer = || CursorKey::Peer("enterprise".into());
        let asked = |limit| PageRequest {
            limit,
            ..PageRequest::default()
        };
        let all = fetch(journal, peer(), asked(10), 1 << 20).await.expect("fetch");
        assert_eq!((all.page.facts.len(), all.more), (4, false), "everything, nothing more");
        let full = fetch(journal, peer(), asked(3), 1 << 20).await.expect("fetch");
        assert_eq!((full.page.facts.len(), full.more), (3, true), "full");
        let cut = fetch(journal, peer(), asked(10), 2_500).await.expect("fetch");
        assert_eq!((cut.page.facts.len(), cut.more), (2, true), "cut by its bytes");
        let last = fetch(
            journal,
            peer(),
            PageRequest {
                after: Some(3),
                ..asked(10)
            },
            2_500,
        )
        .await
        .expect("fetch");
        assert_eq!((last.page.facts.len(), last.more), (1, false), "the rest fits");
    }

    #[tokio::test]
    async fn an_empty_fetch_waits_for_the_next_commit() {
        let fixture = Fixture::open(JournalConfig::default());
        let journal = &fixture.journal;
        let waiting = fetch(
            journal,
            CursorKey::Peer("enterprise".into()),
            request(None, Duration::from_secs(10)),
            1 << 20,
        );
        let append = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            fixture
                .append(message(ZONE, "enterprise", "late"))
                .await
                .expect("append")
        };
        let (served, ack) = tokio::join!(waiting, append);
        let served = served.expect("fetch");
        assert_eq!(
            offsets(&served.page),
            [ack.offset],
            "woken by the commit, not by the timeout"
        );
        assert!(served.waited >= Duration::from_millis(40), "{:?}", served.waited);
    }

    #[tokio::test]
    async fn the_wait_is_reported_apart_from_the_work() {
        let fixture = Fixture::open(JournalConfig::default());
        let peer = || CursorKey::Peer("enterprise".into());
        let idle = fetch(
            &fixture.journal,
            peer(),
            request(None, Duration::from_millis(300)),
            1 << 20,
        );
        let idle = idle.await.expect("fetch");
        assert!(idle.page.facts.is_empty());
        // Most of the 300 ms: the deadline counts from the request, and the read before the
        // wait is work, not wait (it took 12 ms on a loaded CI host, failing a bound of 290 ms).
        assert!(
            idle.waited >= Duration::from_millis(200),
            "the long-poll waited: {:?}",
            idle.waited
        );
        fixture.append(message(ZONE, "enterprise", "e1")).await.expect("append");
        let ready = fetch(&fixture.journal, peer(), request(None, Duration::from_secs(5)), 1 << 20);
        let ready = ready.await.expect("fetch");
        assert_eq!((offsets(&ready.page), ready.waited), (vec![1], Duration::ZERO));
    }

    #[tokio::test]
    async fn a_failed_read_answers_unavailable_and_the_next_one_reads() {
        let fixture = Fixture::open(JournalConfig::default());
        fixture.append(message(ZONE, "enterprise", "e1")).await.expect("append");
        let peer = || CursorKey::Peer("enterprise".into());
        fixture.faults.fail(Op::Read);
        let refused = fetch(&fixture.journal, peer(), request(None, Duration::ZERO), 1 << 20).await;
        let refused = refused.expect_err("the read failed");
        assert_eq!(
            (refused.code, refused.retryable),
            (bsfg_proto::ErrorCode::Unavailable, true)
        );
        let page = fetch(&fixture.journal, peer(), request(None, Duration::ZERO), 1 << 20).await;
        assert_eq!(offsets(&page.expect("read").page), [1]);
        assert!(fixture.journal.health().healthy(), "a read that works ends the run");
    }

    #[tokio::test]
    async fn damaged_data_is_not_served_but_reported_and_keeps_the_node_unready() {
        let fixture = Fixture::open(JournalConfig::default());
        for id in ["e1", "e2"] {
            fixture.append(message(ZONE, "enterprise", id)).await.expect("append");
        }
        let peer = || CursorKey::Peer("enterprise".into());
        fixture.faults.damage(Op::Read);
        let refused = fetch(&fixture.journal, peer(), request(None, Duration::ZERO), 1 << 20).await;
        let refused = refused.expect_err("the read met damage");
        assert_eq!(refused.code, bsfg_proto::ErrorCode::Unavailable);
        assert!(
            refused
                .message
                .contains("store buffer offsets 1..=2 (not narrowed down) cannot be read")
                && refused.message.contains("bsfg storage accept-loss"),
            "{}",
            refused.message
        );
        let health = fixture.journal.health();
        let [damage] = &health.report().damage[..] else {
            panic!("one damaged place: {:?}", health.report())
        };
        assert_eq!(
            (damage.reader.as_str(), damage.first, damage.last),
            ("peer:enterprise", 1, 2)
        );
        fetch(&fixture.journal, peer(), request(None, Duration::ZERO), 1 << 20)
            .await
            .expect("this read works");
        assert!(!health.healthy(), "until an operator accepts the loss");
    }
}
