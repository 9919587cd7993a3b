//! The one backoff policy for retrying etcd sessions and calls: the original's exponential
//! backoff flags (`--backoff-multiplier`, `--backoff-attempt-limit`, `--backoff-threshold-time`)
//! for the snapshotter, and [`retry`] for single calls such as membership changes.

use std::time::Duration;

/// Delay before attempt `n`: 1 s × multiplier^(n-1), capped at the threshold, and the threshold
/// itself once `attempt_limit` attempts were made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExponentialBackoff {
    /// Factor between consecutive delays.
    pub multiplier: u32,
    /// Attempts after which the delay stays at `threshold`.
    pub attempt_limit: u32,
    /// Largest delay.
    pub threshold: Duration,
    attempt: u32,
}

impl Default for ExponentialBackoff {
    fn default() -> Self {
        ExponentialBackoff::new(2, 6, Duration::from_secs(128))
    }
}

impl ExponentialBackoff {
    /// A backoff with the given parameters, before its first attempt.
    #[must_use]
    pub fn new(multiplier: u32, attempt_limit: u32, threshold: Duration) -> ExponentialBackoff {
        ExponentialBackoff {
            multiplier,
            attempt_limit,
            threshold,
            attempt: 0,
        }
    }

    /// The delay before the next attempt; advances the attempt counter.
    pub fn next_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        if self.attempt > self.attempt_limit {
            return self.threshold;
        }
        let factor = u64::from(self.multiplier.max(1)).saturating_pow(self.attempt - 1);
        Duration::from_secs(factor).min(self.threshold)
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Runs `op` until it succeeds or `attempts` attempts were made, waiting `backoff`'s delays in
/// between and logging each failure as `what`; returns the first success or the last error.
///
/// # Errors
/// The last attempt's error.
pub async fn retry<T, E, F, Fut>(
    attempts: u32,
    mut backoff: ExponentialBackoff,
    what: &str,
    mut op: F,
) -> Result<T, E>
where
    E: std::error::Error + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt >= attempts => return Err(e),
            Err(e) => {
                let wait = backoff.next_delay();
                tracing::warn!(
                    "{what} failed: {}; retrying in {wait:?}",
                    crate::error_chain(&e)
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_holds_at_the_threshold() {
        let mut b = ExponentialBackoff::default();
        let d: Vec<u64> = (0..9).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 8, 16, 32, 128, 128, 128]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
        let mut b = ExponentialBackoff::new(3, 10, Duration::from_secs(20));
        let d: Vec<u64> = (0..4).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(d, [1, 3, 9, 20]);
    }
}
