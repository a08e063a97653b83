//! [`RedisOptions`]: which server, how long to wait for it, and what to do
//! when it cannot answer.

use core::time::Duration;
use std::string::{String, ToString};

use super::RedisError;

/// What a Redis-backed object decides when the server cannot answer in
/// time (a timeout, a refused or dropped connection, a server error, or
/// the connection's guard breaker open).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fallback {
    /// Decide with the object's local machine (the default): a limiter
    /// admits at `requests_per_period / expected_instances` (at least 1)
    /// per period, a bulkhead at `max_concurrent / expected_instances` (at
    /// least 1), a breaker counts and trips on this host alone. The fleet's
    /// bound then becomes the sum of the hosts' local bounds.
    #[default]
    Local,
    /// Admit every call (the dependency is not protected while Redis is
    /// down; nothing is ever refused because of Redis).
    FailOpen,
    /// Refuse every call with [`RedisError::Unavailable`] (nothing runs
    /// unprotected; an outage of Redis is an outage of the caller).
    FailClosed,
}

impl Fallback {
    /// The name used in every language: `"local"`, `"open"`, `"closed"`.
    pub const fn name(self) -> &'static str {
        match self {
            Fallback::Local => "local",
            Fallback::FailOpen => "open",
            Fallback::FailClosed => "closed",
        }
    }

    /// The policy for a name from [`name`](Self::name).
    pub fn from_name(name: &str) -> Option<Fallback> {
        match name {
            "local" => Some(Fallback::Local),
            "open" => Some(Fallback::FailOpen),
            "closed" => Some(Fallback::FailClosed),
            _ => None,
        }
    }
}

/// Whose clock the fleet's decisions read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeSource {
    /// Redis's `TIME`, read inside each script (the default): one clock
    /// for the whole fleet, whatever the hosts' clocks say.
    #[default]
    Server,
    /// The calling host's wall clock (`SystemTime`, microseconds since
    /// 1970), passed to each script. For servers that forbid `TIME` in
    /// scripts. **Every host must keep its clock in step (NTP)**: a host
    /// whose clock runs ahead by `d` consumes the next `d` of the limit
    /// early; one behind by `d` sees refusals up to `d` longer.
    Client,
}

/// How a Redis-backed object reaches its server, and what it decides when
/// the server cannot answer.
///
/// The defaults, chosen for a server on the same network:
///
/// | option | default | meaning |
/// | --- | --- | --- |
/// | `prefix` | `"stockade"` | first part of every key; the key format version (`v1`) follows it |
/// | `connect_timeout` | 250 ms | longest wait for a new connection |
/// | `command_timeout` | 100 ms | longest wait for one command's reply (read and write) |
/// | `max_connections` | 16 | connections this process keeps to this server (a caller finding all busy waits at most `command_timeout`) |
/// | `time` | [`TimeSource::Server`] | whose clock decides |
/// | `fallback` | [`Fallback::Local`] | what to decide while Redis cannot answer |
/// | `expected_instances` | 1 | processes sharing the object, to divide the limit for the local fallback |
/// | `guard_failures` | 3 | consecutive failed commands that open the connection's guard breaker |
/// | `guard_reset_timeout` | 1 s | how long the guard stays open before one command probes the server again |
/// | `adopt_stored_config` | `false` | use the config found in Redis instead of failing on a mismatch |
/// | `lease_permits` | 0 (off) | limiter: permits this process takes from Redis at once and hands out locally |
/// | `lease_ttl` | limiter 100 ms, bulkhead 30 s | how long a lease lives: the limiter's unused leased permits, a bulkhead permit not renewed |
/// | `sync_interval` | 1 s | breaker: how often a host re-reads the fleet's state besides pub/sub |
/// | `failure_window` | 60 s | breaker: the window in which fleet-wide failures are counted |
/// | `quorum` | 1 | breaker: distinct hosts that must have seen failures in the window to open it |
///
/// Every call to Redis therefore returns within `connect_timeout +
/// 2 × command_timeout` (a connection that must be opened first, then a
/// script that must be reloaded after `SCRIPT FLUSH`), and within
/// `command_timeout` on an open connection with the script loaded. While
/// the guard is open, calls do not touch the network at all.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stockade::redis::{Fallback, RedisOptions};
///
/// let options = RedisOptions::new("redis://127.0.0.1:6379/0")
///     .prefix("myapp")
///     .command_timeout(Duration::from_millis(50))
///     .fallback(Fallback::Local)
///     .expected_instances(4);
/// assert_eq!(options.url(), "redis://127.0.0.1:6379/0");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RedisOptions {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) max_connections: u32,
    pub(crate) time: TimeSource,
    pub(crate) fallback: Fallback,
    pub(crate) expected_instances: u32,
    pub(crate) guard_failures: u32,
    pub(crate) guard_reset_timeout: Duration,
    pub(crate) adopt_stored_config: bool,
    pub(crate) lease_permits: u32,
    pub(crate) lease_ttl: Option<Duration>,
    pub(crate) sync_interval: Duration,
    pub(crate) failure_window: Duration,
    pub(crate) quorum: u32,
}

impl RedisOptions {
    /// The most connections one process may keep to one server.
    pub const MAX_CONNECTIONS: u32 = 1024;

    /// The defaults, for the server at `url` (`redis://[:password@]host[:port][/db]`,
    /// `rediss://` is not supported by this build, `redis+unix:///path`).
    pub fn new(url: impl Into<String>) -> RedisOptions {
        RedisOptions {
            url: url.into(),
            prefix: "stockade".to_string(),
            connect_timeout: Duration::from_millis(250),
            command_timeout: Duration::from_millis(100),
            max_connections: 16,
            time: TimeSource::Server,
            fallback: Fallback::Local,
            expected_instances: 1,
            guard_failures: 3,
            guard_reset_timeout: Duration::from_secs(1),
            adopt_stored_config: false,
            lease_permits: 0,
            lease_ttl: None,
            sync_interval: Duration::from_secs(1),
            failure_window: Duration::from_secs(60),
            quorum: 1,
        }
    }

    /// The first part of every key (default `"stockade"`). It must not
    /// be empty or contain `{`, `}`, whitespace or control characters.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The longest wait for a new connection (default 250 ms).
    #[must_use]
    pub const fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The longest wait for one command's reply, and for a free
    /// connection (default 100 ms).
    #[must_use]
    pub const fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// The most connections this process keeps to the server (default 16,
    /// at most [`MAX_CONNECTIONS`](Self::MAX_CONNECTIONS)).
    #[must_use]
    pub const fn max_connections(mut self, connections: u32) -> Self {
        self.max_connections = connections;
        self
    }

    /// Whose clock decides (default [`TimeSource::Server`]).
    #[must_use]
    pub const fn time(mut self, time: TimeSource) -> Self {
        self.time = time;
        self
    }

    /// What to decide while Redis cannot answer (default
    /// [`Fallback::Local`]).
    #[must_use]
    pub const fn fallback(mut self, fallback: Fallback) -> Self {
        self.fallback = fallback;
        self
    }

    /// How many processes share the object (default 1): the local
    /// fallback divides the fleet's limit by it.
    #[must_use]
    pub const fn expected_instances(mut self, instances: u32) -> Self {
        self.expected_instances = instances;
        self
    }

    /// Consecutive failed commands that open the connection's guard
    /// breaker (default 3).
    #[must_use]
    pub const fn guard_failures(mut self, failures: u32) -> Self {
        self.guard_failures = failures;
        self
    }

    /// How long the connection's guard breaker stays open before one
    /// command probes the server again (default 1 s). A server that comes
    /// back is used again at most this long after it does.
    #[must_use]
    pub const fn guard_reset_timeout(mut self, timeout: Duration) -> Self {
        self.guard_reset_timeout = timeout;
        self
    }

    /// When the config stored in Redis differs from the caller's, use the
    /// stored one instead of failing with [`RedisError::ConfigMismatch`].
    #[must_use]
    pub const fn adopt_stored_config(mut self, yes: bool) -> Self {
        self.adopt_stored_config = yes;
        self
    }

    /// Limiter only: permits this process takes from Redis in one script
    /// call and hands out locally until they run out or `lease_ttl`
    /// passes (default 0: off, every acquire is one script call). Leasing
    /// weakens a strict limiter's bound: at most `N` in any window of
    /// length `P − lease_ttl`.
    #[must_use]
    pub const fn lease_permits(mut self, permits: u32) -> Self {
        self.lease_permits = permits;
        self
    }

    /// How long a lease lives (limiter default 100 ms, bulkhead default
    /// 30 s): a limiter's leased permits not used by then are dropped; a
    /// bulkhead permit is returned by Redis this long after its holder
    /// stopped renewing it (a host that died).
    ///
    /// Breaker: a half-open probe's lease expires this long after Redis
    /// granted it (default: the config's `half_open_timeout`).
    #[must_use]
    pub const fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = Some(ttl);
        self
    }

    /// Breaker only: how often a host re-reads the fleet's state when no
    /// pub/sub message arrived (default 1 s). Bounds how long a host may
    /// miss a trip elsewhere when a message is lost.
    #[must_use]
    pub const fn sync_interval(mut self, interval: Duration) -> Self {
        self.sync_interval = interval;
        self
    }

    /// Breaker only: the sliding window in which failures are counted
    /// fleet-wide (default 60 s).
    #[must_use]
    pub const fn failure_window(mut self, window: Duration) -> Self {
        self.failure_window = window;
        self
    }

    /// Breaker only: open the fleet's breaker only when at least this many
    /// distinct hosts saw failures in the window (default 1: any host).
    #[must_use]
    pub const fn quorum(mut self, hosts: u32) -> Self {
        self.quorum = hosts;
        self
    }

    /// The limiter's lease size (0 = off).
    pub const fn lease_permits_value(&self) -> u32 {
        self.lease_permits
    }

    /// The lease time if set (`None`: the pattern's default).
    pub const fn lease_ttl_value(&self) -> Option<Duration> {
        self.lease_ttl
    }

    /// The breaker's sync interval.
    pub const fn sync_interval_value(&self) -> Duration {
        self.sync_interval
    }

    /// The breaker's failure window.
    pub const fn failure_window_value(&self) -> Duration {
        self.failure_window
    }

    /// The breaker's quorum.
    pub const fn quorum_value(&self) -> u32 {
        self.quorum
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key prefix.
    pub fn prefix_value(&self) -> &str {
        &self.prefix
    }

    /// The connect timeout.
    pub const fn connect_timeout_value(&self) -> Duration {
        self.connect_timeout
    }

    /// The command timeout.
    pub const fn command_timeout_value(&self) -> Duration {
        self.command_timeout
    }

    /// The connection limit.
    pub const fn max_connections_value(&self) -> u32 {
        self.max_connections
    }

    /// The time source.
    pub const fn time_value(&self) -> TimeSource {
        self.time
    }

    /// The fallback policy.
    pub const fn fallback_value(&self) -> Fallback {
        self.fallback
    }

    /// The expected number of instances.
    pub const fn expected_instances_value(&self) -> u32 {
        self.expected_instances
    }

    /// The guard breaker's failure threshold.
    pub const fn guard_failures_value(&self) -> u32 {
        self.guard_failures
    }

    /// The guard breaker's reset timeout.
    pub const fn guard_reset_timeout_value(&self) -> Duration {
        self.guard_reset_timeout
    }

    /// Whether a stored config is adopted.
    pub const fn adopt_stored_config_value(&self) -> bool {
        self.adopt_stored_config
    }

    /// Checks every option, naming the first one out of range.
    ///
    /// # Errors
    ///
    /// [`RedisError::InvalidOption`] naming the option, its value and the
    /// rule; [`RedisError::InvalidUrl`] for a URL the client cannot parse.
    pub fn validate(&self) -> Result<(), RedisError> {
        fn bad(option: &'static str, value: impl ToString, problem: &'static str) -> RedisError {
            RedisError::InvalidOption {
                option,
                value: value.to_string(),
                problem,
            }
        }
        if self.prefix.is_empty()
            || self
                .prefix
                .chars()
                .any(|c| c == '{' || c == '}' || c.is_whitespace() || c.is_control())
        {
            return Err(bad(
                "prefix",
                &self.prefix,
                "must be non-empty, without braces, whitespace or control characters",
            ));
        }
        let millis = |d: Duration| std::format!("{} ms", d.as_secs_f64() * 1e3);
        if self.connect_timeout.is_zero() || self.connect_timeout > Duration::from_secs(60) {
            return Err(bad(
                "connect_timeout",
                millis(self.connect_timeout),
                "must be more than 0 and at most 60 s",
            ));
        }
        if self.command_timeout.is_zero() || self.command_timeout > Duration::from_secs(60) {
            return Err(bad(
                "command_timeout",
                millis(self.command_timeout),
                "must be more than 0 and at most 60 s",
            ));
        }
        if self.max_connections == 0 || self.max_connections > Self::MAX_CONNECTIONS {
            return Err(bad(
                "max_connections",
                self.max_connections,
                "must be 1 to 1024",
            ));
        }
        if self.expected_instances == 0 {
            return Err(bad(
                "expected_instances",
                self.expected_instances,
                "must be at least 1",
            ));
        }
        if self.guard_failures == 0 || self.guard_failures > 1000 {
            return Err(bad(
                "guard_failures",
                self.guard_failures,
                "must be 1 to 1000",
            ));
        }
        if self.guard_reset_timeout.is_zero()
            || self.guard_reset_timeout > Duration::from_secs(3600)
        {
            return Err(bad(
                "guard_reset_timeout",
                millis(self.guard_reset_timeout),
                "must be more than 0 and at most 1 h",
            ));
        }
        if let Some(ttl) = self.lease_ttl {
            if ttl < Duration::from_millis(1) || ttl > Duration::from_secs(3600) {
                return Err(bad("lease_ttl", millis(ttl), "must be 1 ms to 1 h"));
            }
        }
        if self.lease_permits > 1_000_000 {
            return Err(bad(
                "lease_permits",
                self.lease_permits,
                "must be at most 1000000",
            ));
        }
        if self.sync_interval < Duration::from_millis(1)
            || self.sync_interval > Duration::from_secs(3600)
        {
            return Err(bad(
                "sync_interval",
                millis(self.sync_interval),
                "must be 1 ms to 1 h",
            ));
        }
        if self.failure_window < Duration::from_millis(1)
            || self.failure_window > Duration::from_secs(86_400)
        {
            return Err(bad(
                "failure_window",
                millis(self.failure_window),
                "must be 1 ms to 1 day",
            ));
        }
        if self.quorum == 0 || self.quorum > 1000 {
            return Err(bad("quorum", self.quorum, "must be 1 to 1000"));
        }
        redis::Client::open(self.url.as_str()).map_err(|e| RedisError::InvalidUrl {
            url: super::error::redact(&self.url),
            reason: e.to_string(),
        })?;
        Ok(())
    }
}
