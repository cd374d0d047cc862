//! Paged reads with long-poll, shared by both buffers' `FetchFacts`. Pages carry the messages
//! as they were stored ([`EncodedPage`]): nothing is decoded to be encoded again.
//!
//! Reads run on tokio's blocking pool, never on an actix arbiter. When nothing is ready the
//! fetch waits on the buffer's committed-high-offset watch until it moves or `max_wait` passes.

use std::{sync::Arc, time::Duration};

use bsfg_proto::{EncodedFact, EncodedPage, RpcError};
use tokio::{sync::watch, time::Instant};

use crate::storage::{LogRecord, StorageError};

/// The most facts one page may hold, whatever the caller asks.
pub const MAX_PAGE: u32 = 10_000;

/// Reads `(after, upto]`, at most `limit` entries.
pub type Reader = Arc<dyn Fn(u64, u64, usize) -> Result<Vec<LogRecord>, StorageError> + Send + Sync>;

/// One page request against a buffer.
pub struct Page {
    pub after: u64,
    pub limit: u32,
    pub max_wait: Duration,
    /// Frame budget: a page stops before its facts would exceed this many bytes.
    pub max_bytes: usize,
}

/// Reads a page after `page.after`, waiting up to `page.max_wait` for the first fact.
pub async fn fetch(mut high: watch::Receiver<u64>, read: Reader, page: Page) -> Result<EncodedPage, RpcError> {
    let deadline = Instant::now() + page.max_wait;
    let limit = page.limit.clamp(1, MAX_PAGE) as usize;
    loop {
        let upto = *high.borrow_and_update();
        let reader = read.clone();
        let after = page.after;
        let records = tokio::task::spawn_blocking(move || reader(after, upto, limit))
            .await
            .map_err(|e| RpcError::internal(format!("read task failed: {e}")))?
            .map_err(|e| RpcError::unavailable(e.to_string()))?;
        if !records.is_empty() {
            return Ok(into_page(records, upto.max(page.after), limit, page.max_bytes));
        }
        // Nothing for this reader up to `upto`: the empty page is complete up to there.
        let waited = tokio::time::timeout_at(deadline, high.changed()).await;
        if Instant::now() >= deadline || !matches!(waited, Ok(Ok(()))) {
            return Ok(EncodedPage {
                facts: Vec::new(),
                high_offset: upto.max(page.after),
            });
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
