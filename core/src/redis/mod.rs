//! One limiter, one concurrency limit and one circuit breaker for a whole
//! fleet, kept in a Redis server (feature `redis`).
//!
//! [`crate::shared`] shares a machine between the processes of one host;
//! this module shares it between hosts. Each decision that must be
//! fleet-wide is **one script call** (`EVALSHA`, reloaded after
//! `SCRIPT FLUSH` or a restart) that runs the core's own arithmetic on
//! integers inside Redis, so the fleet gets the same answers a single
//! machine would give, and each decision that need not be (a closed
//! breaker admitting a call, a limiter refusing a caller it already
//! refused) is taken locally with no round trip.
//!
//! The blocking API makes them like local patterns:
//! [`blocking::RateLimiter::redis`](crate::blocking::RateLimiter::redis),
//! [`blocking::Bulkhead::redis`](crate::blocking::Bulkhead::redis) and
//! [`blocking::CircuitBreaker::redis`](crate::blocking::CircuitBreaker::redis)
//! return the same types as `new`, which compose, emit events and report
//! metrics the same way.
//!
//! # Redis is never a hard dependency
//!
//! * **Every command is bounded** ([`RedisOptions`]): at most
//!   `connect_timeout` (250 ms) for a connection and `command_timeout`
//!   (100 ms) for a reply, so a call returns within `connect_timeout + 2 ×
//!   command_timeout` even when the server hangs, and within
//!   `command_timeout` on an open connection.
//! * **A guard breaker** (a core [`CircuitBreaker`](crate::breaker::CircuitBreaker)
//!   per server and process) opens after `guard_failures` (3) failed
//!   commands in a row; while it is open no command is sent and every
//!   decision is taken at once under the fallback, so a long outage costs
//!   no timeouts. After `guard_reset_timeout` (1 s) one command probes the
//!   server; when it answers, everything is decided by Redis again.
//! * **The fallback** ([`Fallback`]) says what to decide meanwhile: with
//!   the local machine (the default), admit everything, or refuse
//!   everything. Events say when the server stops answering and when it
//!   answers again (`StoreUnavailable`, `StoreRecovered`), and the metric
//!   `fallback_decisions` counts the decisions taken under the fallback.
//!
//! # Whose clock
//!
//! By default Redis's `TIME`, read inside the script: hosts' clocks may
//! disagree, the fleet's decisions do not. All times are **integer
//! microseconds since 1970**: a Lua number (a double) holds them exactly
//! until the year 2255, where nanoseconds would already lose precision.
//! [`TimeSource::Client`] passes the caller's wall clock instead, for
//! servers that forbid `TIME` in scripts; it needs the hosts' clocks kept
//! in step (NTP).
//!
//! # Keys
//!
//! Every object has a base key `<prefix>:v1:{<kind>:<name>}` (kind
//! `limiter`, `bulkhead` or `breaker`) and maybe more keys
//! `<base>:<part>`. The prefix ([`RedisOptions::prefix`], default
//! `stockade`) separates applications; `v1` is the key format, so a later
//! format never misreads these keys; the braces are Redis Cluster's hash
//! tag, so all keys of one object live in one slot and one script can touch
//! them all. Every key expires when it is idle, so an object nobody uses
//! leaves nothing behind, and an absent key always means "nothing is in
//! use" (a full bucket, no permits taken, a closed breaker). The config is
//! stored beside the state and compared on every write: another config is
//! [`RedisError::ConfigMismatch`], naming both, unless
//! [`RedisOptions::adopt_stored_config`] is set.
//!
//! Reads and writes go to the server in the URL: point it at the primary.
//! A replica may still hold keys the primary has expired, and refuses
//! script writes.
//!
//! # Bulkhead: a fleet-wide concurrency limit
//!
//! [`blocking::Bulkhead::redis`](crate::blocking::Bulkhead::redis) (engine:
//! [`RedisBulkhead`]) lets at most `max_concurrent` calls run at once
//! across every process that uses the same server, prefix and name, in
//! the style of Stripe's concurrent-requests limiter. What holds, exactly:
//!
//! * **Permits are leases.** Each permit is a member of the sorted set
//!   `<base>:leases` whose score is its expiry on the fleet's clock (Redis
//!   `TIME`, or the hosts' clocks with [`TimeSource::Client`]). Taking one
//!   is one script call that drops expired leases, counts the rest and adds
//!   a lease only if fewer than `max_concurrent` are held (minus those owed
//!   to waiters); giving it back is one call. While Redis answers and no
//!   lease expires under a running call, **at most `max_concurrent` calls
//!   hold a permit fleet-wide**.
//! * **Renewal, and dead hosts.** A keeper thread per bulkhead and process
//!   renews all of that process's leases in one call every `lease_ttl / 3`
//!   ([`RedisOptions::lease_ttl`], default 30 s), so a call may run as long
//!   as it needs. The permits of a process that dies (or stops renewing)
//!   come back at most `lease_ttl` after its last renewal.
//! * **What a failed renewal allows.** If renewals fail for more than
//!   `2 × lease_ttl / 3` (Redis unreachable or too slow, the guard open),
//!   leases of calls still running expire and Redis admits others in their
//!   place: the fleet may then run up to `max_concurrent` plus the number
//!   of such calls, until they finish. They are counted
//!   ([`RedisBulkhead::lost_leases`]). A Redis restart without persistence
//!   forgets every lease, with the same bound.
//! * **No lost, no double-counted permit.** A lease id serves one permit
//!   only, so a retried call never takes two. A permit leaves this
//!   process's list before its release is sent; a release that fails is
//!   retried once by the keeper (within `lease_ttl / 3`), then the lease
//!   expires. A call whose reply never came (a timeout, a dropped
//!   connection) has its possible lease removed the same way.
//! * **Waiting.** A caller that finds no permit joins the fleet's queue if
//!   fewer than `max_queue` callers wait fleet-wide (else it is refused at
//!   once), and polls (1 ms doubling to 50 ms) for up to `queue_timeout`.
//!   The queue is **FIFO across hosts** by join time on the fleet's clock
//!   (ties by id), among waiters that keep polling: a newcomer never takes
//!   a permit owed to a waiter, and a later waiter never takes one owed to
//!   an earlier one; a freed permit is taken at its waiter's next poll
//!   (up to 50 ms later). A waiter's entry expires `waiter_ttl = 1 s +
//!   2 × connect_timeout + 4 × command_timeout` after its last poll, so a
//!   dead waiter's place vanishes; until then it keeps its place, and a
//!   permit it is owed stays unused (others wait up to `waiter_ttl`
//!   longer). A waiter that times out or is disposed removes its entry
//!   (one call; if that fails, the keeper retries once, then the entry
//!   expires).
//! * **Fallback.** When Redis does not answer, [`Fallback::Local`] decides
//!   with a local bulkhead of `max_concurrent / expected_instances` (at
//!   least 1); `FailOpen` admits; `FailClosed` refuses with
//!   [`RedisError::Unavailable`]. Calls admitted under the fallback hold no
//!   lease: while they run after Redis recovers, the fleet may exceed
//!   `max_concurrent` by their number.
//! * **Keys.** `<prefix>:v1:{bulkhead:<name>}` (the config),
//!   `…:leases`, `…:queue`, `…:queue_exp`: one Cluster slot. The sets
//!   expire with their last member (no lease: no leases key); the config
//!   key `lease_ttl` after the last acquire or wait.
//! * **Fork.** A forked child never renews or releases its parent's leases;
//!   it starts with none.

mod bulkhead;
mod error;
mod keys;
mod options;
pub(crate) mod store;

pub use bulkhead::{
    DEFAULT_LEASE_TTL, FIRST_POLL, LONGEST_POLL, RedisBulkhead, RedisBulkheadError, RedisLease,
    RedisWaiter,
};
pub use error::{RedisError, StoreFailure};
pub use options::{Fallback, RedisOptions, TimeSource};
