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
//! # The rate limiter
//!
//! [`RedisRateLimiter`] (and [`blocking::RateLimiter::redis`](crate::blocking::RateLimiter::redis)
//! on top of it) keeps the core limiter's whole state, the theoretical
//! arrival time (TAT), in **one string key** `<prefix>:v1:{limiter:<name>}`
//! (the TAT as 16 digits, then the canonical config: one `GET` and one
//! `SET ... PX` per decision), and takes every decision that needs it in
//! **one script call** (`EVALSHA`): `try_acquire(n)`, `reserve(n,
//! max_wait)` and `cancel` are the core's
//! [`try_acquire_n`](crate::limiter::RateLimiter::try_acquire_n),
//! [`reserve`](crate::limiter::RateLimiter::reserve) and
//! [`cancel`](crate::limiter::RateLimiter::cancel), with the same errors.
//!
//! **What is exact.** The script runs the core's arithmetic on integer
//! microseconds: the emission interval it uses is the core's `T` (`P / N`
//! bursty, `P / (N − B + 1)` strict, in nanoseconds rounded up) **rounded
//! up to whole microseconds**, the burst limit is `B·T`, the queue room
//! `max_queue_size·T`, and a request of `n` permits is granted when
//! `max(TAT, now) + n·T <= now + B·T`. So:
//!
//! * when `T` is a whole number of microseconds (every round rate: 10 per
//!   second, 100 per minute...), every decision is the core machine's:
//!   the same grants, the same refusals in the same order (`ExceedsCapacity`,
//!   then `QueueFull`, then `WaitTooLong` beyond `min(max_wait,
//!   queue_timeout)`), the same waits and the same exact `retry_after`
//!   (a differential test runs random sequences through both);
//! * otherwise `T` is longer by less than 1 µs, so the limiter is slower
//!   by that much per permit and **never admits more**: in strict mode at
//!   most `N` grants in any half-open window of length `P` of the server's
//!   clock, in bursty mode at most `B + floor(W / T)` in any window of
//!   length `W`;
//! * a config whose longest lead (`B·T` plus the longest wait) exceeds
//!   [`MAX_LEAD_MICROS`] (2^51 µs, 71 years) is refused: below it every
//!   sum the script makes stays under 2^53, exact in Lua's doubles, until
//!   the year 2184.
//!
//! The times are Redis's (`TIME`, read in the script) unless
//! [`TimeSource::Client`] is chosen. A booked caller may use its permits
//! from [`RedisReservation::ready_at`]: the moment the reply arrived plus
//! the wait, which is never before the slot Redis booked (it is later by
//! the reply's travel time) as long as this host's clock runs at the
//! server's rate. A cancel succeeds only before the slot is ready and
//! while nobody (on any host) booked after it, as in the core.
//!
//! The key expires one second after the bucket is full again (by Redis's
//! clock; the second keeps the state for hosts whose clocks run a little
//! behind Redis's with [`TimeSource::Client`]), so an absent key is a full
//! bucket, as it is for the core; a
//! refusal writes nothing. Each call also compares the stored config
//! (period, requests per period, burst, queue size, queue timeout, mode):
//! another one is [`RedisError::ConfigMismatch`] naming both, or, with
//! [`RedisOptions::adopt_stored_config`], the stored one is used from then
//! on ([`RedisRateLimiter::config`] tells which).
//!
//! **Local fast paths** (no round trip; neither ever admits more):
//!
//! * **Known refusals.** Every reply tells this process a lower bound on
//!   the TAT: the time it sent the call plus the lead Redis reported.
//!   A call that this bound already refuses is refused at once, with the
//!   error Redis would give (`RateLimited`, `QueueFull` or `WaitTooLong`),
//!   so a caller polling a limiter it was refused by costs one atomic
//!   load, not a round trip. Its `retry_after` is at most Redis's, shorter
//!   by up to the call's travel time, so retrying then may be refused
//!   again (by Redis). It is conservative only if the TAT never moves
//!   back: after another host's `cancel`, or if the server's clock steps
//!   forward, this process may refuse until the bound it knew passes.
//! * **Leasing** ([`RedisOptions::lease_permits`] `k > 0`; **off by
//!   default**). A grant from Redis also takes up to `k − n` more permits
//!   that are free at that moment, in the same script call, and this
//!   process hands them out (one mutex, no round trip) until they are
//!   used or `lease_ttl` (default 100 ms) after the call was sent; the
//!   rest are lost. Only permits within the burst can be free, so a
//!   strict limiter with the default burst of 1 leases nothing. Redis counted them at the grant, so the bounds hold
//!   for **grant** times; for the times permits are **used** they weaken
//!   by the lease time: in strict mode **at most `N` in any window of
//!   length `P − lease_ttl`** (no bound if `lease_ttl >= P`), in bursty
//!   mode at most `B + floor((W + lease_ttl) / T)` in a window of length
//!   `W`.
//!
//! **When Redis fails.** A call whose script cannot run (timeout, refused
//! or dropped connection, error reply, guard breaker open) is decided by
//! the [`Fallback`], and counted in
//! [`fallback_decisions`](RedisRateLimiter::fallback_decisions):
//!
//! * [`Fallback::Local`] (the default): a core limiter of this process at
//!   [`local_share`] of the config: `requests_per_period`, an explicit
//!   `burst` and `max_queue_size` divided by `expected_instances` (each at
//!   least 1), the same period, mode and queue timeout. While Redis is
//!   down the fleet's bound is the sum of the hosts' local bounds. The two
//!   machines do not know each other's grants, so a window that spans a
//!   switch holds at most what Redis granted in it (within the fleet's
//!   bound) plus what the hosts' local machines granted in it (within
//!   their bounds). A request above the local burst is `ExceedsCapacity`
//!   meanwhile.
//! * [`Fallback::FailOpen`] grants; [`Fallback::FailClosed`] refuses with
//!   [`RedisError::Unavailable`].
//!
//! Every call returns within the bounds of [`RedisOptions`] (a script call
//! with the script loaded and the connection open: `command_timeout`),
//! and at once while the guard breaker is open; the first failure after
//! success and the first success after failures are reported once each
//! ([`StoreEvent`]; `StoreUnavailable` / `StoreRecovered` events of the
//! blocking limiter). A cancel that cannot reach Redis fails: the slot
//! stays used (conservative).
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
//!
//! # The circuit breaker
//!
//! [`blocking::CircuitBreaker::redis`](crate::blocking::CircuitBreaker::redis)
//! (engine: [`RedisCircuitBreaker`]) is one breaker for every process, on
//! every host, that opens the same name on the same server.
//!
//! **Closed calls cost no round trip.** Each process keeps a copy of the
//! fleet's state (state, generation, when it began) in one atomic word;
//! admitting a call while it says "closed" is one load more than a local
//! breaker, and a success sends nothing. The copy is refreshed by the
//! replies to this process's own script calls, by a pub/sub message on the
//! channel `<base>:events` that every transition publishes, and by a sync
//! every [`sync_interval`](RedisOptions::sync_interval) (default 1 s) in
//! case a message was lost. One background thread and one connection per
//! breaker and process do the last two (reconnecting with back-off). So
//! a trip on one host makes every other host refuse **within
//! `sync_interval + 2 × command_timeout`** of it while Redis answers
//! ([`RedisCircuitBreaker::propagation_bound`]), normally within one
//! network delay (the message). Until its first reply from Redis a process
//! knows nothing: its first call asks (one round trip), so a process
//! joining a fleet whose breaker is open never admits as if it were
//! closed.
//!
//! **Counting is windowed, not consecutive.** Each failure of a closed
//! call is one script call that records it with Redis's time in a sorted
//! set trimmed to [`failure_window`](RedisOptions::failure_window)
//! (default 60 s); the breaker opens when `failure_threshold` failures lie
//! in the window. Successes send nothing, so unlike the local breaker
//! (`failure_threshold` *consecutive* failures, reset by a success) a
//! success does not clear earlier failures: they leave the window as it
//! slides. With [`quorum`](RedisOptions::quorum) `Q > 1` it opens only
//! when at least `Q` distinct hosts also recorded failures in the window,
//! so one sick host cannot open everyone's circuit (Polly #287); a "host"
//! is one breaker object of one process (a forked child counts apart from
//! its parent). A failure of a call admitted
//! before the breaker last closed is not counted. The config's
//! `failure_rate` (a window over calls) is refused, since it would cost a
//! round trip per call; `slow_call_threshold` is measured locally and a
//! slow success is recorded as a failure.
//!
//! **Open.** A trip sets the state open, the generation plus one, the
//! open time to Redis's now, and publishes. Every host then refuses
//! locally until the open time plus `reset_timeout`, as estimated from the
//! offset between Redis's time and its own monotonic clock (taken from
//! each script reply, which carries the time the script used). The
//! estimate only says when to ask: no probe is ever admitted without a
//! script call, and that script judges `reset_timeout` by Redis's clock
//! alone.
//!
//! **Half-open: at most K probes fleet-wide.** After `reset_timeout` a
//! call asks Redis for a probe. The script moves the breaker to half-open
//! (a new generation) and grants at most `half_open_max_probes` (K)
//! leases at once, fleet-wide; each lease expires at Redis's now plus
//! [`lease_ttl`](RedisOptions::lease_ttl) (default `half_open_timeout`),
//! so a host that dies holding a probe frees it then. A probe that
//! outlives its lease loses it: its slot may be granted again (more than K
//! calls may then be running) and its verdict is ignored. A host refused
//! a probe refuses locally for `min(the reply's wait, sync_interval)`
//! before asking again. The round follows the core's rule: a failed probe
//! re-opens (new generation, published); a round closes when it has
//! lasted `half_open_timeout` with at least one successful probe and no
//! failed one (checked on each probe's success and on each request for a
//! probe), or early after `half_open_successes_to_close` successes; a
//! round that ends with no success starts a fresh one (new generation,
//! leases cleared).
//!
//! **Generations.** Every fleet transition adds one to the generation, and
//! every admission and verdict carries the generation it belongs to: a
//! verdict of an older round, or a failure from an earlier closed period,
//! changes nothing. A key made afresh (after it expired) starts at Redis's
//! time in microseconds, so generations keep growing across an expiry as
//! long as Redis's clock does not step back by more than the idle time
//! (with [`TimeSource::Client`], as long as the hosts' clocks agree that
//! well).
//!
//! **Manual operations** (`trip`, `reset`, `force_open`, `disable`) move
//! the fleet's breaker (one script call, published) and this process's
//! local one. When Redis cannot be reached they move the local one only
//! and return [`RedisError::Unavailable`] (as `Error::Redis`). A forced
//! open or disabled breaker's state key does not expire: it waits for a
//! `reset`.
//!
//! **Events and metrics.** `StateChanged` is emitted for every fleet
//! transition this process observes (its own calls, messages, syncs) that
//! changes the state, once, by whichever of its threads observes it first
//! (so the event of this process's own `trip` or `reset` may be delivered
//! by the subscriber thread just after the call returns); its
//! `generation` numbers those changes in this
//! process (1, 2, 3, …; the fleet's generation is
//! [`RedisCircuitBreaker::generation`]). `Metrics::state` is the fleet's
//! state as cached; `breaker_metrics` is the local breaker's.
//!
//! **When Redis cannot answer.** The local core breaker counts every call
//! of this process all along (so it is warm). After a failed command (a
//! script call, or the background sync) every decision follows the
//! [`Fallback`] without a round trip: the local breaker decides alone,
//! every call is admitted, or every call is refused with
//! [`RedisError::Unavailable`]; failures are then not sent to Redis. Each
//! such decision counts in `fallback_decisions`. The background sync keeps
//! trying, so the fleet decides again at most `guard_reset_timeout +
//! sync_interval + connect_timeout + command_timeout` after the server
//! answers again. A call makes at most two script calls (asking for a
//! probe, or the first sync of a process, and then reporting its
//! verdict), each bounded as above; a closed call that succeeds makes
//! none, and one that fails makes one.
//!
//! **Keys and expiry.** The state hash is `<prefix>:v1:{breaker:<name>}`;
//! `<base>:failures`, `<base>:hosts` and `<base>:probes` sit in the same
//! Cluster slot. Every write sets their expiry to `max(failure_window,
//! reset_timeout + half_open_timeout, lease) + 1 s` (in whole
//! milliseconds, rounded up), so an idle breaker
//! leaves nothing behind and an absent key reads as closed with no
//! failures (an open breaker nobody asked about for that long is then
//! closed). The stored config (threshold, timeouts, probes, window,
//! quorum, lease) is compared by every script call: another one makes
//! every call of this process fail with [`RedisError::ConfigMismatch`]
//! from the first sync or call that meets it until they agree again
//! (delete the key, or let it expire), unless
//! [`adopt_stored_config`](RedisOptions::adopt_stored_config) is set (then
//! the script uses the stored one; this process's local estimate of the
//! open time still uses its own `reset_timeout`, which only changes when
//! it asks).
//!
//! **After fork.** A child forked from a process that holds Redis
//! breakers does not inherit their background threads: a `pthread_atfork`
//! handler marks each breaker's copy, and the child's first call starts a
//! thread of its own and asks Redis before admitting anything.

mod breaker;
mod bulkhead;
mod error;
mod keys;
mod limiter;
mod options;
pub(crate) mod store;

pub(crate) use breaker::FleetReport;
pub use breaker::{FleetAdmission, FleetEvent, RedisCircuitBreaker};
pub use bulkhead::{
    DEFAULT_LEASE_TTL, FIRST_POLL, LONGEST_POLL, RedisBulkhead, RedisBulkheadError, RedisLease,
    RedisWaiter,
};
pub use error::{RedisError, StoreFailure};
pub use limiter::{
    Grant, MAX_LEAD_MICROS, RedisLimitError, RedisRateLimiter, RedisReservation, StoreEvent, Via,
    local_share,
};
pub use options::{Fallback, RedisOptions, TimeSource};
