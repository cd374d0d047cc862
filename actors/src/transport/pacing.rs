//! Pacing bytes to a rate (a peer link's `max_bytes_per_second`): a token bucket as a plain value
//! that takes `now`, and a shared handle every writer of one direction of one link charges before
//! it sends. Charging may run the bucket into debt, which the caller waits out, so a page larger
//! than the burst is spread over time instead of refused. [`PacedRead`] paces what is read from
//! a stream instead (an artifact pulled from a peer): QUIC's flow control then holds the sender
//! to the same pace.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{ready, Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, ReadBuf},
    time::{Instant, Sleep},
};

/// Bytes a bucket holds when full: a tenth of a second at its rate, at least 16 KiB.
const MIN_BURST: f64 = 16.0 * 1024.0;

/// A token bucket: `rate` bytes per second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    level: f64,
    at: Instant,
}

impl Bucket {
    pub fn new(bytes_per_second: u64, now: Instant) -> Self {
        let rate = bytes_per_second.max(1) as f64;
        let burst = (rate / 10.0).max(MIN_BURST);
        Self {
            rate,
            burst,
            level: burst,
            at: now,
        }
    }

    /// Takes `bytes` at `now`: how long to wait before sending them.
    pub fn charge(&mut self, bytes: u64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + elapsed * self.rate).min(self.burst) - bytes as f64;
        self.at = now;
        match self.level < 0.0 {
            true => Duration::from_secs_f64(-self.level / self.rate),
            false => Duration::ZERO,
        }
    }
}

/// One direction of one link, shared by everything that sends on it; unlimited by default.
#[derive(Debug, Clone, Default)]
pub struct Pacer(Option<Arc<Mutex<Bucket>>>);

impl Pacer {
    /// At most `bytes_per_second`, or unlimited.
    pub fn new(bytes_per_second: Option<u64>) -> Self {
        Self(bytes_per_second.map(|rate| Arc::new(Mutex::new(Bucket::new(rate, Instant::now())))))
    }

    /// Waits until `bytes` may be sent (at once when unlimited).
    pub async fn pace(&self, bytes: usize) {
        let wait = self.charge(bytes);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes `bytes` now: how long to wait before going on (zero when unlimited).
    fn charge(&self, bytes: usize) -> Duration {
        let Some(bucket) = &self.0 else {
            return Duration::ZERO;
        };
        bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .charge(bytes as u64, Instant::now())
    }

    /// The rate, when limited.
    pub fn rate(&self) -> Option<u64> {
        let bucket = self.0.as_ref()?;
        Some(bucket.lock().unwrap_or_else(PoisonError::into_inner).rate as u64)
    }
}

/// A reader whose reads are paced by a [`Pacer`]: after each read it waits, before the next one,
/// as long as the bytes read put the bucket in debt.
pub struct PacedRead<'a, R> {
    inner: R,
    pacer: &'a Pacer,
    wait: Option<Pin<Box<Sleep>>>,
}

impl<'a, R> PacedRead<'a, R> {
    pub fn new(inner: R, pacer: &'a Pacer) -> Self {
        Self {
            inner,
            pacer,
            wait: None,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for PacedRead<'_, R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(wait) = &mut this.wait {
            ready!(wait.as_mut().poll(cx));
            this.wait = None;
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let wait = this.pacer.charge(buf.filled().len() - before);
        if !wait.is_zero() {
            this.wait = Some(Box::pin(tokio::time::sleep(wait)));
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_lets_its_burst_through_then_spreads_bytes_at_its_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::new(100 * 1024, start);
        assert_eq!(bucket.charge(16 * 1024, start), Duration::ZERO, "the burst is free");
        let wait = bucket.charge(50 * 1024, start);
        assert_eq!(wait, Duration::from_millis(500), "50 KiB more at 100 KiB/s");
        let later = start + wait;
        assert_eq!(bucket.charge(0, later), Duration::ZERO, "the debt is paid off");
        let mut total = Duration::ZERO;
        let mut now = later;
        for _ in 0..100 {
            let wait = bucket.charge(10 * 1024, now);
            now += wait;
            total += wait;
        }
        assert!(
            (total.as_secs_f64() - 10.0).abs() < 0.01,
            "1000 KiB in about 10 s: {total:?}"
        );
    }

    /// In real time (tokio's paused clock needs a feature that would fork tokio's build for
    /// tests): a loaded machine can only make it slower.
    #[tokio::test]
    async fn a_pacer_holds_writers_to_its_rate_and_an_unlimited_one_never_waits() {
        let unlimited = Pacer::default();
        let started = Instant::now();
        unlimited.pace(10 << 20).await;
        assert!(started.elapsed() < Duration::from_millis(50));
        let pacer = Pacer::new(Some(10 << 20));
        let writers = (0..4).map(|_| {
            let pacer = pacer.clone();
            tokio::spawn(async move {
                for _ in 0..8 {
                    pacer.pace(64 << 10).await;
                }
            })
        });
        futures::future::join_all(writers).await;
        let elapsed = started.elapsed().as_secs_f64();
        // 2 MiB less the 1 MiB burst, at 10 MiB/s: 0.1 s.
        assert!(
            (0.09..=1.0).contains(&elapsed),
            "four writers held to the rate: {elapsed}"
        );
        assert_eq!(pacer.rate(), Some(10 << 20));
    }
}
