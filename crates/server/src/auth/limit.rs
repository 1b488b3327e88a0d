//! A per-peer rate limit for the sign-in endpoints: a fixed one-minute window per address.
//!
//! In memory, per process: it slows password guessing and assertion spraying from one address,
//! it is not a quota. Behind a reverse proxy every client shares the proxy's address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Default attempts per peer and minute on `/auth/login` and on `/auth/token`.
///
/// A person mistyping a password or a client fetching a token every few minutes stays far
/// below it; a password guesser gets ten tries a minute.
pub const DEFAULT_ATTEMPTS_PER_MINUTE: u32 = 10;

const WINDOW: Duration = Duration::from_secs(60);

/// Addresses remembered before stale windows are dropped: bounds memory under a scan from
/// many addresses.
const MAX_TRACKED_PEERS: usize = 10_000;

#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_window: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl RateLimiter {
    pub(crate) fn new(per_minute: u32) -> Self {
        Self {
            per_window: per_minute.max(1),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one attempt from `peer`; `Err(wait)` when over the limit.
    pub(crate) fn check(&self, peer: Option<IpAddr>) -> Result<(), Duration> {
        let peer = peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let now = Instant::now();
        // Nothing here can panic while the lock is held, so a poisoned lock is still whole.
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if windows.len() >= MAX_TRACKED_PEERS {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if windows.len() >= MAX_TRACKED_PEERS {
                windows.clear();
            }
        }
        let (start, count) = windows.entry(peer).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            *start = now;
            *count = 0;
        }
        if *count >= self.per_window {
            return Err(WINDOW.saturating_sub(now.duration_since(*start)));
        }
        *count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_peer_has_its_own_window() {
        let l = RateLimiter::new(2);
        let a = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        let b = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
        assert!(l.check(a).is_ok() && l.check(a).is_ok());
        let wait = l.check(a).expect_err("third");
        assert!(wait <= WINDOW && wait > Duration::from_secs(50));
        assert!(l.check(b).is_ok());
    }
}
