//! Token buckets limiting how fast each imaging queue is consumed, adjustable at run time.
//! Rate 0 pauses: `acquire` then waits for a rate change without polling.

use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::watch;

/// One queue's bucket. Capacity is one second's worth of tokens (at least one), so a
/// paused-then-resumed queue does not burst.
#[derive(Debug)]
pub struct TokenBucket {
    rate: watch::Sender<f64>,
    state: tokio::sync::Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn new(rate: f64) -> Self {
        Self { rate: watch::Sender::new(rate.max(0.0)), state: tokio::sync::Mutex::new((0.0, Instant::now())) }
    }

    /// Items per second.
    pub fn rate(&self) -> f64 {
        *self.rate.borrow()
    }

    /// Sets the rate; negative rates are the caller's error to report.
    pub fn set_rate(&self, rate: f64) {
        self.rate.send_replace(rate.max(0.0));
    }

    /// Waits for a token.
    pub async fn acquire(&self) {
        let mut changes = self.rate.subscribe();
        loop {
            let rate = *changes.borrow_and_update();
            if rate <= 0.0 {
                // Paused: sleep until the rate changes.
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                continue;
            }
            let wait = {
                let mut state = self.state.lock().await;
                let (tokens, last) = &mut *state;
                let now = Instant::now();
                *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(rate.max(1.0));
                *last = now;
                if *tokens >= 1.0 {
                    *tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - *tokens) / rate)
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = changes.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokens_come_at_the_rate_and_zero_pauses() {
        let bucket = std::sync::Arc::new(TokenBucket::new(10.0));
        let start = tokio::time::Instant::now();
        for _ in 0..21 {
            bucket.acquire().await;
        }
        // The first token needs 0.1 s, then 10 per second.
        let elapsed = start.elapsed().as_secs_f64();
        assert!((2.0..2.2).contains(&elapsed), "{elapsed}");

        bucket.set_rate(0.0);
        let waiting = tokio::spawn({
            let bucket = bucket.clone();
            async move { bucket.acquire().await }
        });
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!waiting.is_finished(), "paused: no token in an hour");
        bucket.set_rate(1.0);
        tokio::time::timeout(Duration::from_secs(2), waiting).await.expect("resumed").unwrap();
    }
}
