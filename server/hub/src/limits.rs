//! Limits that keep one peer or one address from hurting the others: a
//! token bucket per peer (frames and bytes per second, with bursts),
//! connections per IP address, and an exponential back-off on failed
//! authentication per IP address and per link.
//!
//! Nothing here refuses an edit: a peer over its rate is *slowed* (the hub
//! stops reading its socket until the bucket refills, so TCP pushes back
//! on the sender and nothing is lost), while every other peer's frames keep
//! flowing. What is refused is a new connection over the per-IP cap and an
//! authentication attempt during a back-off, each with a clear error.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens a second, at most `burst` saved up. Taking
/// more than there is goes into debt; the debt says how long to wait.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64, now: Instant) -> TokenBucket {
        let burst = burst.max(1.0);
        TokenBucket { rate: rate.max(f64::MIN_POSITIVE), burst, tokens: burst, last: now }
    }

    /// Takes `n` tokens; returns how long the owner must pause before the
    /// next take (zero when there is no debt).
    pub fn take(&mut self, n: f64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - n;
        if self.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-self.tokens / self.rate) }
    }
}

/// One peer's two buckets: frames and bytes.
#[derive(Debug, Clone)]
pub struct PeerRate {
    frames: TokenBucket,
    bytes: TokenBucket,
}

/// The per-peer rate settings (see `HubConfig`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub frames_per_s: f64,
    pub burst_frames: f64,
    pub bytes_per_s: f64,
    pub burst_bytes: f64,
}

impl PeerRate {
    pub fn new(limit: RateLimit, now: Instant) -> PeerRate {
        PeerRate {
            frames: TokenBucket::new(limit.frames_per_s, limit.burst_frames, now),
            bytes: TokenBucket::new(limit.bytes_per_s, limit.burst_bytes, now),
        }
    }

    /// Accounts one frame of `len` bytes; returns how long to stop reading.
    pub fn take(&mut self, len: usize, now: Instant) -> Duration {
        self.frames.take(1.0, now).max(self.bytes.take(len as f64, now))
    }
}

/// Open connections per IP address, capped.
#[derive(Debug)]
pub struct IpConnections {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// Holds one connection slot of an address; released on drop.
#[derive(Debug)]
pub struct IpSlot {
    owner: Arc<IpConnections>,
    ip: IpAddr,
}

impl IpConnections {
    pub fn new(max: usize) -> Arc<IpConnections> {
        Arc::new(IpConnections { max, open: Mutex::new(HashMap::new()) })
    }

    /// A slot for one more connection from `ip`, unless it has `max` open.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(ip).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(IpSlot { owner: Arc::clone(self), ip })
    }

    /// Connections open from `ip`.
    pub fn open(&self, ip: IpAddr) -> usize {
        self.open.lock().map(|o| o.get(&ip).copied().unwrap_or(0)).unwrap_or(0)
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Failed authentications of one key (an IP address or a link).
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    /// No attempt is looked at before this.
    until: Instant,
    last: Instant,
}

/// Exponential back-off after failed authentication: the first `free`
/// failures of a key cost nothing; each further one doubles the wait
/// (from `base`, at most `max`) before that key may try again. A key
/// whose last failure is older than `forget` starts over.
#[derive(Debug)]
pub struct AuthBackoff {
    free: u32,
    base: Duration,
    max: Duration,
    forget: Duration,
    keys: Mutex<HashMap<String, Failures>>,
}

/// Keys kept at most; past it, the ones idle longest are forgotten.
const MAX_KEYS: usize = 100_000;

impl AuthBackoff {
    pub fn new(free: u32, base: Duration, max: Duration) -> AuthBackoff {
        AuthBackoff { free, base, max, forget: Duration::from_secs(600).max(max * 4), keys: Mutex::new(HashMap::new()) }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long `key` must still wait before an attempt is looked at.
    pub fn wait(&self, key: &str, now: Instant) -> Option<Duration> {
        let keys = self.keys();
        let f = keys.get(key)?;
        (f.until > now).then(|| f.until - now)
    }

    /// Records a failed attempt of `key`.
    pub fn failed(&self, key: &str, now: Instant) {
        let mut keys = self.keys();
        if keys.len() >= MAX_KEYS && !keys.contains_key(key) {
            let forget = self.forget;
            keys.retain(|_, f| now.saturating_duration_since(f.last) < forget);
            if keys.len() >= MAX_KEYS
                && let Some(oldest) = keys.iter().min_by_key(|(_, f)| f.last).map(|(k, _)| k.clone())
            {
                keys.remove(&oldest);
            }
        }
        let f = keys.entry(key.to_owned()).or_insert(Failures { count: 0, until: now, last: now });
        if now.saturating_duration_since(f.last) >= self.forget {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        if f.count > self.free {
            let doublings = (f.count - self.free - 1).min(30);
            let wait = self.base.saturating_mul(1u32 << doublings).min(self.max);
            f.until = now + wait;
        }
    }

    /// A successful attempt: `key` starts over.
    pub fn succeeded(&self, key: &str) {
        self.keys().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5.0, t0);
        for _ in 0..5 {
            assert_eq!(b.take(1.0, t0), Duration::ZERO);
        }
        let wait = b.take(1.0, t0);
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100), "{wait:?}");
        // After a second, ten more tokens (capped at the burst of five).
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.take(4.0, t1), Duration::ZERO);
    }

    #[test]
    fn connections_per_ip_are_capped_and_released() {
        let caps = IpConnections::new(2);
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let a = caps.acquire(ip).expect("first");
        let _b = caps.acquire(ip).expect("second");
        assert!(caps.acquire(ip).is_none());
        assert!(caps.acquire("10.0.0.2".parse().expect("ip")).is_some());
        drop(a);
        assert!(caps.acquire(ip).is_some());
    }

    #[test]
    fn failures_back_off_exponentially_up_to_the_cap() {
        let t0 = Instant::now();
        let backoff = AuthBackoff::new(3, Duration::from_millis(100), Duration::from_secs(2));
        for _ in 0..3 {
            backoff.failed("ip:x", t0);
        }
        assert_eq!(backoff.wait("ip:x", t0), None, "the first failures are free");
        backoff.failed("ip:x", t0);
        assert_eq!(backoff.wait("ip:x", t0), Some(Duration::from_millis(100)));
        backoff.failed("ip:x", t0);
        assert_eq!(backoff.wait("ip:x", t0), Some(Duration::from_millis(200)));
        for _ in 0..50 {
            backoff.failed("ip:x", t0);
        }
        assert_eq!(backoff.wait("ip:x", t0), Some(Duration::from_secs(2)));
        assert_eq!(backoff.wait("ip:x", t0 + Duration::from_secs(3)), None);
        backoff.succeeded("ip:x");
        assert_eq!(backoff.wait("ip:x", t0), None);
    }
}
