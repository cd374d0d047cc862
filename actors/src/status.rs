//! The refresher of the status gauges (SPEC §11): once a second, from the journal's cursors and
//! one single-entry read per series (on the blocking pool), it sets per-peer frontier and
//! replication lag and per-consumer backlog, lag and confirm rate.

use std::{collections::HashMap, sync::Arc, time::Duration};

use bsfg_proto::model::now_unix_ms;

use crate::{journal::Journal, metrics::Metrics, storage::CursorKey};

const INTERVAL: Duration = Duration::from_secs(1);

/// Runs until the task is aborted.
pub async fn refresh(journal: Journal, metrics: Arc<Metrics>, peers: Vec<String>) {
    let mut previous: HashMap<String, u64> = HashMap::new();
    let mut ticker = tokio::time::interval(INTERVAL);
    loop {
        ticker.tick().await;
        let (journal, metrics, peers) = (journal.clone(), metrics.clone(), peers.clone());
        let mut confirmed = std::mem::take(&mut previous);
        let done = tokio::task::spawn_blocking(move || {
            refresh_once(&journal, &metrics, &peers, &mut confirmed);
            confirmed
        })
        .await;
        previous = done.unwrap_or_default();
    }
}

/// Age in seconds of something stored at `stored_at_unix_ms`.
fn age(stored_at_unix_ms: u64) -> f64 {
    now_unix_ms().saturating_sub(stored_at_unix_ms) as f64 / 1000.0
}

fn refresh_once(journal: &Journal, metrics: &Metrics, peers: &[String], confirmed: &mut HashMap<String, u64>) {
    let storage = journal.storage();
    let cursors = journal.cursors();
    let (store_high, forward_high) = (*journal.store_high().borrow(), *journal.forward_high().borrow());
    for peer in peers {
        let frontier = cursors.get(&CursorKey::Peer(peer.clone())).copied().unwrap_or(0);
        metrics.frontier_offset.with_label_values(&[peer]).set(frontier as i64);
        let oldest = storage
            .read_store(peer, frontier, store_high, 1)
            .ok()
            .and_then(|r| r.first().cloned());
        let lag = oldest.map_or(0.0, |r| age(r.stored_at_unix_ms));
        metrics.replication_lag_seconds.with_label_values(&[peer]).set(lag);
        let high = metrics.replication_lag_high_watermark.with_label_values(&[peer]);
        if lag > high.get() {
            high.set(lag);
        }
    }
    for (key, cursor) in &cursors {
        let CursorKey::Consumer(name) = key else { continue };
        metrics
            .consumer_backlog_size
            .with_label_values(&[name])
            .set(forward_high.saturating_sub(*cursor) as i64);
        let oldest = storage
            .read_forward(*cursor, forward_high, 1)
            .ok()
            .and_then(|r| r.first().cloned());
        let lag = oldest.map_or(0.0, |r| age(r.stored_at_unix_ms));
        metrics.consumer_lag_seconds.with_label_values(&[name]).set(lag);
        let before = confirmed.insert(name.clone(), *cursor).unwrap_or(*cursor);
        let rate = cursor.saturating_sub(before) as f64 / INTERVAL.as_secs_f64();
        metrics.confirm_rate_per_second.with_label_values(&[name]).set(rate);
    }
}
