//! Tower layers (feature `tower`): every pattern, and any async pipeline of
//! them, as a [`Layer`] that wraps a [`Service`].
//!
//! | layer | pattern | request |
//! |---|---|---|
//! | [`CircuitBreakerLayer`] | [`CircuitBreaker`] | any |
//! | [`RateLimiterLayer`] | [`RateLimiter`] | any |
//! | [`BulkheadLayer`] | [`Bulkhead`] | any |
//! | [`TimeoutLayer`] | [`Timeout`] | any |
//! | [`RetryLayer`] | [`Retry`] | `Clone` (each attempt sends a clone) |
//! | [`PolicyLayer::new`] / [`Pipeline::into_layer`] | a pipeline without a retry | any |
//! | [`PolicyLayer::replaying`] / [`Pipeline::into_replaying_layer`] | any pipeline | `Clone` |
//!
//! Each wrapped service runs the request through the pattern's async form
//! (`execute_async`, [`AsyncPolicy`]): the
//! same objects, state, events and metrics as their blocking calls, so one
//! breaker can guard an HTTP route and a background thread at once.
//!
//! # Readiness
//!
//! `poll_ready` is the inner service's, and **nothing is reserved in it**:
//! admission (a limiter's permit, a bulkhead's slot, a breaker's verdict)
//! is decided when the response future is first polled, and a refusal is
//! that future's error. So a service that is polled ready and then dropped
//! (or never called) holds nothing, and a request that waits for a permit
//! waits in its own future, cancellable by dropping it (each pattern gives
//! back what it held, see its `execute_async`). This is the "decide in
//! `call`" convention; `tower::limit` instead reserves in `poll_ready`.
//!
//! The inner service is called only once the request was admitted: the
//! wrapper keeps the instance that was polled ready for the request (and
//! a clone of it for the next one, as tower's own middleware do), so `S`
//! must be `Clone`. A retry's later attempts call fresh clones, each polled
//! ready first.
//!
//! # Response futures
//!
//! A layer without a retry ([`SingleAttempt`]) answers with a
//! [`ResponseFuture`]: a named type, not a box, made of each pattern's own
//! future ([`future`]) around the one attempt, so a request on the healthy
//! path (admitted at once, answered at once) allocates nothing. It holds
//! one clone of the policy's `Arc` and `Send`s whenever the inner
//! service's future, request and response do. A layer with a retry
//! ([`Replay`] mode) answers with a boxed [`ReplayFuture`].
//!
//! # Errors and HTTP statuses
//!
//! The wrapped service's error is [`Error<S::Error>`](Error): the inner
//! service's own errors as [`Error::Inner`], the patterns' refusals as
//! their variants. [`Error::http_status`] maps them to the status to
//! answer with — the same mapping the request-response pattern uses:
//!
//! | error | status |
//! |---|---|
//! | [`Error::RateLimited`] (a limiter refused) | 429 |
//! | [`Error::BreakerOpen`], [`Error::BulkheadFull`], [`Error::QueueTimeout`], [`Error::Disposed`] | 503 |
//! | [`Error::TimedOut`] | 504 |
//! | [`Error::RetriesExhausted`] | the last attempt's |
//! | [`Error::Inner`] (the inner service failed) | 500 |
//!
//! # Which responses are failures
//!
//! By default only the inner service's `Err` counts as a failure (for a
//! breaker's count and a retry's decision). An HTTP service answers its
//! failures as `Ok` responses (axum's error type is `Infallible`), so
//! every layer takes a classifier, [`failing_on`](PolicyLayer::failing_on):
//! a response it calls a failure counts as one, and is still returned as
//! the response (after a retry gave up, the last attempt's response).
//!
//! # Examples
//!
//! A breaker and a timeout in front of a service (here a plain function
//! made a service with `tower`'s `service_fn`; axum's routes work the same,
//! see `core/examples/axum.rs` in the repository):
//!
//! ```
//! # #[cfg(feature = "tokio")] {
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use stockade::prelude::*;
//! use stockade::tower::PolicyLayer;
//! use tower_layer::Layer;
//! use tower_service::Service;
//!
//! # #[derive(Clone)]
//! # struct Echo;
//! # impl Service<u32> for Echo {
//! #     type Response = u32;
//! #     type Error = Infallible;
//! #     type Future = std::future::Ready<Result<u32, Infallible>>;
//! #     fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
//! #         std::task::Poll::Ready(Ok(()))
//! #     }
//! #     fn call(&mut self, n: u32) -> Self::Future { std::future::ready(Ok(n * 2)) }
//! # }
//! # let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
//! # runtime.block_on(async {
//! let breaker = CircuitBreaker::new("doc-tower", BreakerConfig::DEFAULT)?;
//! let timeout = Timeout::new("doc-tower", TimeoutConfig::new(Duration::from_secs(2))?)?;
//! let layer = Pipeline::new().then_async(breaker).then_async(timeout).into_layer();
//!
//! let mut service = layer.layer(Echo); // `Echo`: a `Service<u32>` doubling its request
//! std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
//! assert_eq!(service.call(21).await?, 42);
//!
//! // A refusal is an error with its HTTP status.
//! let limiter = RateLimiter::new("doc-tower", RateLimiterConfig::DEFAULT
//!     .with_requests_per_period(1)
//!     .with_burst(1)
//!     .with_queue_timeout(Duration::ZERO))?;
//! let mut limited = stockade::tower::RateLimiterLayer::new(limiter).layer(Echo);
//! assert_eq!(limited.call(1).await?, 2);
//! let refused = limited.call(2).await.unwrap_err();
//! assert_eq!(refused.http_status(), 429);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! # }
//! ```

use core::fmt::{self, Display};
use core::future::{Future, poll_fn};
use core::marker::PhantomData;
use core::pin::Pin;
use core::task::{Context, Poll};
use std::boxed::Box;
use std::sync::Arc;

use parking_lot::Mutex;
pub use tower_layer::Layer;
pub use tower_service::Service;

use crate::blocking::async_call::Keep;
use crate::blocking::{
    AsyncPolicy, AsyncTimer, Bulkhead, CircuitBreaker, Error, Nested, Pipeline, RateLimiter, Retry,
    Timeout, Timer, Unprotected,
};
use crate::clock::MonotonicClock;

// --- Policies a layer runs ---------------------------------------------------

mod sealed {
    /// Seals [`LayerPolicy`](super::LayerPolicy) and
    /// [`SingleAttempt`](super::SingleAttempt).
    pub trait Sealed {}
}

/// The policies a layer runs (sealed): every pattern of
/// [`crate::blocking`] with an async form, [`Unprotected`], and
/// [`Pipeline`]s and `Arc`s of them. It is [`AsyncPolicy`] with a future
/// that is `Send` whenever the call's is: what a tower service handed to a
/// multi-threaded runtime (axum's) needs, and what a generic
/// `AsyncPolicy` cannot promise.
pub trait LayerPolicy: AsyncPolicy + Send + Sync + sealed::Sealed {
    /// [`AsyncPolicy::run_async`], with a `Send` future.
    fn run_send<R, E, F, Fut>(&self, call: F) -> impl Future<Output = Result<R, Error<E>>> + Send
    where
        R: Send,
        E: Display + Send,
        F: Fn() -> Fut + Clone + Send + Sync,
        Fut: Future<Output = Result<R, Error<E>>> + Send;
}

/// A future of one attempt whose output's parts are named: implemented
/// for every `Future<Output = Result<R, Error<E>>>`, so that
/// [`SingleAttempt::Once`] can name its output.
pub trait Attempt: Future<Output = Result<Self::Ok, Error<Self::Err>>> {
    /// The attempt's value.
    type Ok;
    /// The attempt's own error, inside [`Error::Inner`].
    type Err;
}

impl<R, E, F: Future<Output = Result<R, Error<E>>>> Attempt for F {
    type Ok = R;
    type Err = E;
}

/// A [`LayerPolicy`] that makes at most one attempt per request (sealed):
/// every pattern but [`Retry`], and pipelines without one. A layer over
/// one moves the request into its single attempt, so the request need not
/// be `Clone`, and its response future is a named type, not a box.
pub trait SingleAttempt: LayerPolicy {
    /// The future of one attempt `A` under this policy: a named type
    /// (see [`future`]), `Send` whenever `A` is.
    type Once<'a, A: Attempt>: Future<Output = Result<A::Ok, Error<A::Err>>>
    where
        Self: 'a;

    /// Runs the one attempt `call` under this policy: as
    /// [`run_send`](LayerPolicy::run_send) with a call made once, without
    /// a closure to make it.
    fn run_once<A: Attempt>(&self, call: A) -> Self::Once<'_, A>;
}

/// Implements [`LayerPolicy`] for a pattern by delegating to its
/// `AsyncPolicy` impl (whose future the compiler sees is `Send`).
macro_rules! layer_policy {
    ($ty:ty, $($bounds:tt)*) => {
        impl<T: $($bounds)*> sealed::Sealed for $ty {}

        impl<T: $($bounds)*> LayerPolicy for $ty {
            #[inline]
            fn run_send<R, E, F, Fut>(
                &self,
                call: F,
            ) -> impl Future<Output = Result<R, Error<E>>> + Send
            where
                R: Send,
                E: Display + Send,
                F: Fn() -> Fut + Clone + Send + Sync,
                Fut: Future<Output = Result<R, Error<E>>> + Send,
            {
                self.run_async(call)
            }
        }
    };
}

layer_policy!(CircuitBreaker<T>, Timer + 'static);
layer_policy!(RateLimiter<T>, AsyncTimer);
layer_policy!(Bulkhead<T>, AsyncTimer);
layer_policy!(Timeout<T>, AsyncTimer);
layer_policy!(Retry<T>, AsyncTimer);

impl<T: Timer + 'static> SingleAttempt for CircuitBreaker<T> {
    type Once<'a, A: Attempt>
        = future::BreakerFuture<'a, T, A>
    where
        Self: 'a;

    /// Classified as the breaker's `AsyncPolicy` does: a refusal from a
    /// policy inside is not the call's failure.
    #[inline]
    fn run_once<A: Attempt>(&self, call: A) -> Self::Once<'_, A> {
        future::BreakerFuture {
            inner: self.run_kept_async(call),
        }
    }
}

/// Implements [`SingleAttempt`] for a pattern whose one attempt is its
/// crate-private named call (`$run`, the call's error kept as it is),
/// wrapped in its public named future.
macro_rules! single_attempt {
    ($pattern:ident, $future:ident, $run:ident) => {
        impl<T: AsyncTimer> SingleAttempt for $pattern<T> {
            type Once<'a, A: Attempt>
                = future::$future<'a, T, A>
            where
                Self: 'a;

            #[inline]
            fn run_once<A: Attempt>(&self, call: A) -> Self::Once<'_, A> {
                future::$future {
                    inner: self.$run::<A, Keep>(call),
                }
            }
        }
    };
}

single_attempt!(RateLimiter, RateLimiterFuture, limited_async);
single_attempt!(Bulkhead, BulkheadFuture, guarded_async);
single_attempt!(Timeout, TimeoutFuture, run_future);

impl sealed::Sealed for Unprotected {}

impl LayerPolicy for Unprotected {
    #[inline]
    fn run_send<R, E, F, Fut>(&self, call: F) -> impl Future<Output = Result<R, Error<E>>> + Send
    where
        R: Send,
        E: Display + Send,
        F: Fn() -> Fut + Clone + Send + Sync,
        Fut: Future<Output = Result<R, Error<E>>> + Send,
    {
        call()
    }
}

impl SingleAttempt for Unprotected {
    type Once<'a, A: Attempt> = A;

    #[inline]
    fn run_once<A: Attempt>(&self, call: A) -> A {
        call
    }
}

impl<Outer: LayerPolicy, Inner: LayerPolicy> sealed::Sealed for Nested<Outer, Inner> {}

impl<Outer: LayerPolicy, Inner: LayerPolicy> LayerPolicy for Nested<Outer, Inner> {
    #[inline]
    fn run_send<R, E, F, Fut>(&self, call: F) -> impl Future<Output = Result<R, Error<E>>> + Send
    where
        R: Send,
        E: Display + Send,
        F: Fn() -> Fut + Clone + Send + Sync,
        Fut: Future<Output = Result<R, Error<E>>> + Send,
    {
        let inner = &self.inner;
        self.outer.run_send(move || inner.run_send(call.clone()))
    }
}

impl<Outer: SingleAttempt, Inner: SingleAttempt> SingleAttempt for Nested<Outer, Inner> {
    type Once<'a, A: Attempt>
        = Outer::Once<'a, Inner::Once<'a, A>>
    where
        Self: 'a;

    #[inline]
    fn run_once<A: Attempt>(&self, call: A) -> Self::Once<'_, A> {
        self.outer.run_once(self.inner.run_once(call))
    }
}

impl<P: LayerPolicy> sealed::Sealed for Pipeline<P> {}

impl<P: LayerPolicy> LayerPolicy for Pipeline<P> {
    #[inline]
    fn run_send<R, E, F, Fut>(&self, call: F) -> impl Future<Output = Result<R, Error<E>>> + Send
    where
        R: Send,
        E: Display + Send,
        F: Fn() -> Fut + Clone + Send + Sync,
        Fut: Future<Output = Result<R, Error<E>>> + Send,
    {
        self.policy.run_send(call)
    }
}

impl<P: SingleAttempt> SingleAttempt for Pipeline<P> {
    type Once<'a, A: Attempt>
        = P::Once<'a, A>
    where
        Self: 'a;

    #[inline]
    fn run_once<A: Attempt>(&self, call: A) -> Self::Once<'_, A> {
        self.policy.run_once(call)
    }
}

impl<P: LayerPolicy + ?Sized> sealed::Sealed for Arc<P> {}

impl<P: LayerPolicy + ?Sized> LayerPolicy for Arc<P> {
    #[inline]
    fn run_send<R, E, F, Fut>(&self, call: F) -> impl Future<Output = Result<R, Error<E>>> + Send
    where
        R: Send,
        E: Display + Send,
        F: Fn() -> Fut + Clone + Send + Sync,
        Fut: Future<Output = Result<R, Error<E>>> + Send,
    {
        (**self).run_send(call)
    }
}

impl<P: SingleAttempt + ?Sized> SingleAttempt for Arc<P> {
    type Once<'a, A: Attempt>
        = P::Once<'a, A>
    where
        Self: 'a;

    #[inline]
    fn run_once<A: Attempt>(&self, call: A) -> Self::Once<'_, A> {
        (**self).run_once(call)
    }
}

// --- Classifying responses ----------------------------------------------------

/// Says which of a service's `Ok` responses count as failures (for a
/// breaker's count and a retry's decision); see
/// [`PolicyLayer::failing_on`]. Implemented by [`ErrorsOnly`] and by any
/// `Fn(&Resp) -> bool + Clone + Send + Sync + 'static`.
pub trait Classify<Resp>: Clone + Send + Sync + 'static {
    /// `true` if `response` is a failure.
    fn is_failure(&self, response: &Resp) -> bool;
}

/// The default classification: no response is a failure, only the inner
/// service's errors are.
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorsOnly;

impl<Resp> Classify<Resp> for ErrorsOnly {
    #[inline]
    fn is_failure(&self, _: &Resp) -> bool {
        false
    }
}

impl<Resp, F> Classify<Resp> for F
where
    F: Fn(&Resp) -> bool + Clone + Send + Sync + 'static,
{
    #[inline]
    fn is_failure(&self, response: &Resp) -> bool {
        self(response)
    }
}

/// An attempt's failure inside the policies: the inner service's error, or
/// a response classified as a failure (returned as the response in the
/// end).
enum Failed<Resp, E> {
    Service(E),
    Response(Resp),
}

impl<Resp, E: Display> Display for Failed<Resp, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failed::Service(e) => e.fmt(f),
            Failed::Response(_) => f.write_str("the response was classified as a failure"),
        }
    }
}

/// The policies' result as the service's: a response classified as a
/// failure is the response (after a retry gave up, the last attempt's).
#[inline]
fn settle<Resp, E>(result: Result<Resp, Error<Failed<Resp, E>>>) -> Result<Resp, Error<E>> {
    match result {
        Ok(response) => Ok(response),
        Err(failed) => settle_failed(failed),
    }
}

/// [`settle`] for a failure. Out of line: the healthy path never runs it.
#[cold]
#[inline(never)]
fn settle_failed<Resp, E>(failed: Error<Failed<Resp, E>>) -> Result<Resp, Error<E>> {
    match failed {
        Error::Inner(Failed::Response(response)) => Ok(response),
        Error::Inner(Failed::Service(e)) => Err(Error::Inner(e)),
        Error::RetriesExhausted { attempts, last } => match settle_failed(*last) {
            Ok(response) => Ok(response),
            Err(last) => Err(Error::RetriesExhausted {
                attempts,
                last: Box::new(last),
            }),
        },
        // Neither `Inner` nor `RetriesExhausted` (both handled above), so
        // `map_inner` never calls its closure.
        other => Err(other.map_inner(|failed| match failed {
            Failed::Service(e) => e,
            Failed::Response(_) => unreachable!("a refusal carries no response"),
        })),
    }
}

pin_project_lite::pin_project! {
    /// One attempt: calls `service` (polled ready) with `request` at its
    /// first poll (once the policies admitted it; the service is dropped
    /// after the call, as tower's `Oneshot` does), then classifies the
    /// response.
    struct AttemptFuture<S: Service<Req>, Req, C> {
        ready: Option<(S, Req)>,
        classify: C,
        #[pin]
        called: Option<S::Future>,
    }
}

impl<S: Service<Req>, Req, C> AttemptFuture<S, Req, C> {
    fn new(service: S, request: Req, classify: C) -> Self {
        AttemptFuture {
            ready: Some((service, request)),
            classify,
            called: None,
        }
    }
}

impl<S, Req, C> Future for AttemptFuture<S, Req, C>
where
    S: Service<Req>,
    C: Classify<S::Response>,
{
    type Output = Result<S::Response, Error<Failed<S::Response, S::Error>>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some((mut service, request)) = this.ready.take() {
            this.called.set(Some(service.call(request)));
        }
        let Some(called) = this.called.as_pin_mut() else {
            panic!("a tower attempt polled after it completed")
        };
        Poll::Ready(match core::task::ready!(called.poll(cx)) {
            Ok(response) if this.classify.is_failure(&response) => {
                Err(Error::Inner(Failed::Response(response)))
            }
            Ok(response) => Ok(response),
            Err(e) => Err(Error::Inner(Failed::Service(e))),
        })
    }
}

// --- The combined layer and its service ----------------------------------------

/// The request goes into the single attempt (see [`SingleAttempt`]).
#[derive(Clone, Copy, Debug)]
pub enum Once {}

/// Each attempt sends a clone of the request (a pipeline with a retry).
#[derive(Clone, Copy, Debug)]
pub enum Replay {}

/// A [`Layer`] that runs every request through a policy: one pattern or a
/// [`Pipeline`] of them (see the [module docs](self) for readiness,
/// errors and classification).
///
/// Made by [`new`](Self::new) (or [`Pipeline::into_layer`]) for a policy
/// that makes one attempt per request, for any request type; by
/// [`replaying`](Self::replaying) (or [`Pipeline::into_replaying_layer`])
/// for any policy, a retry included, for `Clone` requests. The policy is
/// shared (one `Arc`) by every service the layer makes.
pub struct PolicyLayer<P, M = Once, C = ErrorsOnly> {
    policy: Arc<P>,
    classify: C,
    mode: PhantomData<fn() -> M>,
}

impl<P, M, C: Clone> Clone for PolicyLayer<P, M, C> {
    fn clone(&self) -> Self {
        PolicyLayer {
            policy: Arc::clone(&self.policy),
            classify: self.classify.clone(),
            mode: PhantomData,
        }
    }
}

impl<P, M, C> fmt::Debug for PolicyLayer<P, M, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyLayer").finish_non_exhaustive()
    }
}

impl<P: SingleAttempt> PolicyLayer<P, Once> {
    /// A layer running each request once through `policy` (one pattern, or
    /// a pipeline without a retry: see [`SingleAttempt`]); the request is
    /// moved into the call, so it need not be `Clone`.
    pub fn new(policy: impl Into<Arc<P>>) -> Self {
        PolicyLayer {
            policy: policy.into(),
            classify: ErrorsOnly,
            mode: PhantomData,
        }
    }
}

impl<P: LayerPolicy> PolicyLayer<P, Replay> {
    /// A layer running each request through `policy`, which may make
    /// several attempts (a [`Retry`] in it): each attempt calls a fresh
    /// clone of the inner service, polled ready, with a clone of the
    /// request, so the request type must be `Clone`.
    pub fn replaying(policy: impl Into<Arc<P>>) -> Self {
        PolicyLayer {
            policy: policy.into(),
            classify: ErrorsOnly,
            mode: PhantomData,
        }
    }
}

impl<P, M, C> PolicyLayer<P, M, C> {
    /// Counts the responses `classify` returns `true` for as failures (a
    /// breaker counts them, a retry retries them); they are still returned
    /// as responses. For HTTP: `|r: &Response| r.status().is_server_error()`.
    pub fn failing_on<D>(self, classify: D) -> PolicyLayer<P, M, D> {
        PolicyLayer {
            policy: self.policy,
            classify,
            mode: PhantomData,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Arc<P> {
        &self.policy
    }
}

impl<S, P, M, C: Clone> Layer<S> for PolicyLayer<P, M, C> {
    type Service = Protected<S, P, M, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Protected {
            inner,
            policy: handle(&self.policy),
            classify: self.classify.clone(),
            mode: PhantomData,
        }
    }
}

/// One service instance's hold on the shared policy: its own reference
/// count (an `Arc` made per instance, by `layer` and by each `clone`)
/// around one reference to the policy's shared `Arc`. A request's future
/// takes a reference on the instance's count, not the policy's: requests
/// served by instances on different threads (tower clones a service per
/// connection, a benchmark per thread) write no shared count.
type Handle<P> = Arc<Arc<P>>;

/// A new instance's [`Handle`] on `policy`.
fn handle<P>(policy: &Arc<P>) -> Handle<P> {
    Arc::new(Arc::clone(policy))
}

/// A service wrapped by a [`PolicyLayer`] (or a pattern's layer): runs
/// each request through the policy, then the inner service.
///
/// Each instance (made by the layer, or by `clone`) keeps its own
/// reference count on the policy (one allocation per instance), which
/// each request's future takes a reference on: requests of instances used
/// on different threads do not contend for one count.
pub struct Protected<S, P, M = Once, C = ErrorsOnly> {
    inner: S,
    policy: Handle<P>,
    classify: C,
    mode: PhantomData<fn() -> M>,
}

impl<S: Clone, P, M, C: Clone> Protected<S, P, M, C> {
    /// What one `call` takes along: the instance polled ready serves this
    /// request (its clone the next), with the policy and the classifier.
    fn take_ready(&mut self) -> (S, Handle<P>, C) {
        let fresh = self.inner.clone();
        let service = core::mem::replace(&mut self.inner, fresh);
        (service, Arc::clone(&self.policy), self.classify.clone())
    }
}

impl<S: Clone, P, M, C: Clone> Clone for Protected<S, P, M, C> {
    fn clone(&self) -> Self {
        Protected {
            inner: self.inner.clone(),
            policy: handle(&self.policy),
            classify: self.classify.clone(),
            mode: PhantomData,
        }
    }
}

impl<S: fmt::Debug, P, M, C> fmt::Debug for Protected<S, P, M, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Protected")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, P, M, C> Protected<S, P, M, C> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The policy.
    pub fn policy(&self) -> &Arc<P> {
        &self.policy
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The future of a [`Protected`] service in [`Replay`] mode (a retry in
/// the policy): boxed, `Send`.
pub type ReplayFuture<R, E> = Pin<Box<dyn Future<Output = Result<R, Error<E>>> + Send>>;

pin_project_lite::pin_project! {
    /// The future of a [`Protected`] service in [`Once`] mode: the
    /// policy's named future over the one attempt (no box), and the
    /// service instance's hold on the policy it borrows from, kept alive
    /// with it. `Send` when the service's future, request and response
    /// are.
    pub struct ResponseFuture<S, P, Req, C>
    where
        S: Service<Req>,
        P: SingleAttempt,
        P: 'static,
        C: Classify<S::Response>,
    {
        // Declared (so dropped) before `policy`, which it borrows from.
        #[pin]
        running: P::Once<'static, AttemptFuture<S, Req, C>>,
        policy: Handle<P>,
    }
}

impl<S, P, Req, C> Future for ResponseFuture<S, P, Req, C>
where
    S: Service<Req>,
    P: SingleAttempt + 'static,
    C: Classify<S::Response>,
{
    type Output = Result<S::Response, Error<S::Error>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().running.poll(cx).map(settle)
    }
}

impl<S, P, Req, C> fmt::Debug for ResponseFuture<S, P, Req, C>
where
    S: Service<Req>,
    P: SingleAttempt + 'static,
    C: Classify<S::Response>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, P, C, Req> Service<Req> for Protected<S, P, Once, C>
where
    S: Service<Req> + Clone,
    S::Error: Display,
    P: SingleAttempt + 'static,
    C: Classify<S::Response>,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S, P, Req, C>;

    /// The inner service's readiness; nothing is reserved (see the
    /// [module docs](self)).
    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Inner)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let (service, policy, classify) = self.take_ready();
        // SAFETY: the reference points into the shared `Arc`'s allocation,
        // which `policy` (owned by the returned future) keeps alive through
        // the instance's `Arc` it holds, and which does not move when the
        // future moves; `running`, the only holder of the reference, is
        // declared before `policy`, so it is dropped first, and nothing
        // gives `running` out. `SingleAttempt` is sealed, and no policy's
        // `Once` future keeps the reference beyond itself.
        let borrowed: &'static P = unsafe { &*Arc::as_ptr(&*policy) };
        ResponseFuture {
            running: borrowed.run_once(AttemptFuture::new(service, request, classify)),
            policy,
        }
    }
}

impl<S, P, C, Req> Service<Req> for Protected<S, P, Replay, C>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Response: Send + 'static,
    S::Error: Display + Send + 'static,
    S::Future: Send + 'static,
    Req: Clone + Send + 'static,
    P: LayerPolicy + 'static,
    C: Classify<S::Response>,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ReplayFuture<S::Response, S::Error>;

    /// The inner service's readiness; nothing is reserved (see the
    /// [module docs](self)).
    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Inner)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let (service, policy, classify) = self.take_ready();
        Box::pin(async move {
            // The first attempt gets the instance polled ready and the
            // request; later ones clones of both (the clone polled ready).
            let template = Mutex::new((service.clone(), request.clone()));
            let first = Mutex::new(Some((service, request)));
            let result = policy
                .run_send(|| {
                    let taken = first.lock().take();
                    let (service, request, ready) = match taken {
                        Some((service, request)) => (service, request, true),
                        None => {
                            let template = template.lock();
                            (template.0.clone(), template.1.clone(), false)
                        }
                    };
                    let classify = &classify;
                    async move {
                        let mut service = service;
                        if !ready {
                            poll_fn(|cx| service.poll_ready(cx))
                                .await
                                .map_err(|e| Error::Inner(Failed::Service(e)))?;
                        }
                        AttemptFuture::new(service, request, classify.clone()).await
                    }
                })
                .await;
            settle(result)
        })
    }
}

// --- One layer per pattern --------------------------------------------------------

/// A layer per pattern: a [`PolicyLayer`] over one pattern, named.
macro_rules! pattern_layer {
    (
        $(#[$doc:meta])*
        $name:ident, $pattern:ident, $mode:ident, $param:ident, $($bounds:tt)*
    ) => {
        $(#[$doc])*
        pub struct $name<T: Timer = MonotonicClock, C = ErrorsOnly>(PolicyLayer<$pattern<T>, $mode, C>);

        impl<T: $($bounds)*> $name<T> {
            /// A layer that runs each request through `pattern`.
            pub fn new($param: Arc<$pattern<T>>) -> Self {
                $name(PolicyLayer {
                    policy: $param,
                    classify: ErrorsOnly,
                    mode: PhantomData,
                })
            }
        }

        impl<T: Timer, C> $name<T, C> {
            /// Counts the responses `classify` returns `true` for as
            /// failures (see [`PolicyLayer::failing_on`]).
            pub fn failing_on<D>(self, classify: D) -> $name<T, D> {
                $name(self.0.failing_on(classify))
            }

            /// The pattern.
            pub fn pattern(&self) -> &Arc<$pattern<T>> {
                self.0.policy()
            }
        }

        impl<T: Timer, C: Clone> Clone for $name<T, C> {
            fn clone(&self) -> Self {
                $name(self.0.clone())
            }
        }

        impl<T: Timer, C> fmt::Debug for $name<T, C> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }

        impl<S, T: Timer, C: Clone> Layer<S> for $name<T, C> {
            type Service = Protected<S, $pattern<T>, $mode, C>;

            fn layer(&self, inner: S) -> Self::Service {
                self.0.layer(inner)
            }
        }
    };
}

pattern_layer!(
    /// Runs each request through a [`CircuitBreaker`]
    /// ([`execute_async`](CircuitBreaker::execute_async)): refused with
    /// [`Error::BreakerOpen`] (503) while open; the inner service's errors
    /// (and responses classified as failures) count as failures; a
    /// request whose future is dropped is not counted.
    CircuitBreakerLayer, CircuitBreaker, Once, breaker, Timer + 'static
);

pattern_layer!(
    /// Runs each request through a [`RateLimiter`]
    /// ([`execute_async`](RateLimiter::execute_async)): waits for its
    /// permit without blocking (at most the limiter's `queue_timeout`),
    /// or is refused with [`Error::RateLimited`] (429).
    RateLimiterLayer, RateLimiter, Once, limiter, AsyncTimer
);

pattern_layer!(
    /// Runs each request through a [`Bulkhead`]
    /// ([`execute_async`](Bulkhead::execute_async)): holds a permit while
    /// the inner service answers, waits in the bulkhead's FIFO when all
    /// are held (at most `queue_timeout`), or is refused with
    /// [`Error::BulkheadFull`] / [`Error::QueueTimeout`] (503).
    BulkheadLayer, Bulkhead, Once, bulkhead, AsyncTimer
);

pattern_layer!(
    /// Bounds each request by a [`Timeout`]
    /// ([`execute_async`](Timeout::execute_async)): at the deadline the
    /// inner service's future is dropped and the request fails with
    /// [`Error::TimedOut`] (504).
    TimeoutLayer, Timeout, Once, timeout, AsyncTimer
);

pattern_layer!(
    /// Retries each request with a [`Retry`]
    /// ([`execute_async`](Retry::execute_async)): the request type must be
    /// `Clone` (each attempt sends a clone, to a fresh clone of the inner
    /// service polled ready). The inner service's errors, and responses
    /// classified as failures, are retried as the retry's matchers say;
    /// after the last attempt a failing response is returned as the
    /// response.
    RetryLayer, Retry, Replay, retry, AsyncTimer
);

// --- Pipelines --------------------------------------------------------------------

impl<P: SingleAttempt> Pipeline<P> {
    /// This pipeline as one [`PolicyLayer`] (feature `tower`): each request
    /// runs once through every policy, then the inner service. For a
    /// pipeline without a retry; see
    /// [`into_replaying_layer`](Self::into_replaying_layer) otherwise.
    pub fn into_layer(self) -> PolicyLayer<Self> {
        PolicyLayer::new(self)
    }
}

impl<P: LayerPolicy> Pipeline<P> {
    /// This pipeline as one [`PolicyLayer`] (feature `tower`) that may make
    /// several attempts (a retry in it): the request type must be `Clone`
    /// (see [`PolicyLayer::replaying`]).
    pub fn into_replaying_layer(self) -> PolicyLayer<Self, Replay> {
        PolicyLayer::replaying(self)
    }
}

// --- Named response futures ---------------------------------------------------------

/// The named futures of the patterns' layers: what [`SingleAttempt::Once`]
/// is for each pattern, so a [`Protected`] service's [`ResponseFuture`]
/// is a plain (unboxed) type. Each is the pattern's own async call (the
/// same admission, counting and cancellation as its `execute_async`)
/// over an attempt whose error is already an [`Error`].
pub mod future {
    use core::future::Future;
    use core::pin::Pin;
    use core::task::{Context, Poll};

    use super::Attempt;
    use crate::blocking::async_call::Keep;
    use crate::blocking::{
        AsyncTimer, Error, GuardedCall, KeptCall, LimitedCall, TimedCall, Timer, Traced,
    };

    /// Implements `Future` (and `Debug`) for a pattern's named future by
    /// polling the crate-private call it wraps.
    macro_rules! named_future {
        ($(#[$doc:meta])* $name:ident, $bound:path, $inner:ty) => {
            pin_project_lite::pin_project! {
                $(#[$doc])*
                pub struct $name<'a, T: $bound, A: Attempt> {
                    #[pin]
                    pub(super) inner: $inner,
                }
            }

            impl<T: AsyncTimer, A: Attempt> Future for $name<'_, T, A> {
                type Output = Result<A::Ok, Error<A::Err>>;

                #[inline]
                fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
                    self.project().inner.poll(cx)
                }
            }

            impl<T: $bound, A: Attempt> core::fmt::Debug for $name<'_, T, A> {
                fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                    f.debug_struct(stringify!($name)).finish_non_exhaustive()
                }
            }
        };
    }

    named_future!(
        /// One attempt through a [`RateLimiter`](crate::blocking::RateLimiter)
        /// (as its `execute_async`).
        RateLimiterFuture, Timer, Traced<'a, LimitedCall<'a, T, A, Keep>>
    );
    named_future!(
        /// One attempt under a [`Bulkhead`](crate::blocking::Bulkhead)'s permit
        /// (as its `execute_async`).
        BulkheadFuture, Timer, Traced<'a, GuardedCall<'a, T, A, Keep>>
    );
    named_future!(
        /// One attempt bounded by a [`Timeout`](crate::blocking::Timeout) (as
        /// its `execute_async`).
        TimeoutFuture, AsyncTimer, Traced<'a, TimedCall<'a, T, A, Keep>>
    );

    pin_project_lite::pin_project! {
        /// One attempt through a
        /// [`CircuitBreaker`](crate::blocking::CircuitBreaker) (as its
        /// `execute_async`; a refusal from a policy inside is not the
        /// attempt's failure).
        pub struct BreakerFuture<'a, T: Timer, A: Attempt> {
            #[pin]
            pub(super) inner: Traced<'a, KeptCall<'a, T, A, A::Ok, A::Err>>,
        }
    }

    impl<T: Timer, A: Attempt> Future for BreakerFuture<'_, T, A> {
        type Output = Result<A::Ok, Error<A::Err>>;

        #[inline]
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            self.project().inner.poll(cx)
        }
    }

    impl<T: Timer, A: Attempt> core::fmt::Debug for BreakerFuture<'_, T, A> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("BreakerFuture").finish_non_exhaustive()
        }
    }
}
