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

use std::{future::Future, sync::Arc, time::Duration};

use bsfg_proto::{EncodedFact, EncodedPage, RpcError};
use tokio::{sync::watch, time::Instant};

use crate::{
    journal::Journal,
    storage::{CursorKey, LogRecord, StorageError},
};

/// The most facts one page may hold, whatever the caller asks.
pub const MAX_PAGE: u32 = 10_000;

/// What a reader asks for: at most `limit` facts after `after` (or after its confirmed cursor),
/// waiting up to `max_wait` for the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub max_wait: Duration,
    pub after: Option<u64>,
}

/// A page and how long the fetch waited for its first fact (zero when one was ready).
#[derive(Debug)]
pub struct Served {
    pub page: EncodedPage,
    pub waited: Duration,
}

/// Reads `(after, upto]`, at most `limit` entries.
type Reader = Arc<dyn Fn(u64, u64, usize) -> Result<Vec<LogRecord>, StorageError> + Send + Sync>;

/// One page request against a buffer.
struct Page {
    after: u64,
    limit: u32,
    max_wait: Duration,
    /// Frame budget: a page stops before its facts would exceed this many bytes.
    max_bytes: usize,
}

/// The page `request` asks of the reader `cursor` names; a page stops before its facts exceed
/// `max_bytes`. The cursor is read now; the returned future does the reading and the waiting.
pub fn fetch(
    journal: &Journal,
    cursor: CursorKey,
    request: PageRequest,
    max_bytes: usize,
) -> impl Future<Output = Result<Served, RpcError>> + 'static {
    let page = Page {
        after: request.after.unwrap_or_else(|| journal.cursor(&cursor)),
        limit: request.limit,
        max_wait: request.max_wait,
        max_bytes,
    };
    let storage = journal.storage();
    let (high, read): (_, Reader) = match cursor {
        CursorKey::Peer(peer) => (
            journal.store_high(),
            Arc::new(move |after, upto, limit| storage.read_store(&peer, after, upto, limit)),
        ),
        CursorKey::Consumer(_) => (
            journal.forward_high(),
            Arc::new(move |after, upto, limit| storage.read_forward(after, upto, limit)),
        ),
    };
    wait_for_page(high, read, page)
}

/// Reads a page after `page.after`, waiting up to `page.max_wait` for the first fact.
async fn wait_for_page(mut high: watch::Receiver<u64>, read: Reader, page: Page) -> Result<Served, RpcError> {
    let deadline = Instant::now() + page.max_wait;
    let limit = page.limit.clamp(1, MAX_PAGE) as usize;
    let mut waited = Duration::ZERO;
    loop {
        let upto = *high.borrow_and_update();
        let reader = read.clone();
        let after = page.after;
        let records = tokio::task::spawn_blocking(move || reader(after, upto, limit))
            .await
            .map_err(|e| RpcError::internal(format!("read task failed: {e}")))?
            .map_err(|e| RpcError::unavailable(e.to_string()))?;
        if !records.is_empty() {
            let page = into_page(records, upto.max(page.after), limit, page.max_bytes);
            return Ok(Served { page, waited });
        }
        // Nothing for this reader up to `upto`: the empty page is complete up to there.
        let wait_started = Instant::now();
        let woken = tokio::time::timeout_at(deadline, high.changed()).await;
        waited += wait_started.elapsed();
        if Instant::now() >= deadline || !matches!(woken, Ok(Ok(()))) {
            let page = EncodedPage {
                facts: Vec::new(),
                high_offset: upto.max(page.after),
            };
            return Ok(Served { page, waited });
        }
    }
}

/// Builds the page from the stored encodings as they are: `high_offset` is `upto` when every entry
/// up to it is in the page, else the last entry included (page full, or frame budget reached).
fn into_page(records: Vec<LogRecord>, upto: u64, limit: usize, max_bytes: usize) -> EncodedPage {
    let full = records.len() >= limit;
    let mut facts = Vec::with_capacity(records.len());
    let mut bytes = 0usize;
    for record in records {
        bytes += record.encoded.len() + 16;
        if bytes > max_bytes && !facts.is_empty() {
            let high_offset = facts.last().map_or(0, |f: &EncodedFact| f.offset);
            return EncodedPage { facts, high_offset };
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
    EncodedPage { facts, high_offset }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        journal::JournalConfig,
        testkit::{faults::Op, message, page, Fixture, ZONE},
    };

    fn request(after: Option<u64>, max_wait: Duration) -> PageRequest {
        PageRequest {
            limit: 10,
            max_wait,
            after,
        }
    }

    fn offsets(page: &EncodedPage) -> Vec<u64> {
        page.facts.iter().map(|f| f.offset).collect()
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
        assert!(
            idle.waited >= Duration::from_millis(290),
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
    }
}
