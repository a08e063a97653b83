//! Pipelines built at run time from an array of policies:
//! `stockade_pipeline` over the core's `DynPipeline`.

use core::ffi::c_void;
use std::boxed::Box;
use std::sync::Arc;
use std::vec::Vec;

use stockade_core::blocking::{DynCall, DynPipeline, DynPolicy, DynValue};

use super::{Detached, Release, stockade_callback, stockade_policy, stockade_release_fn};
use crate::boundary::{Out, arg};
use crate::status::stockade_status;

/// Patterns composed in an order chosen at run time (the core's
/// `DynPipeline`): the first stage is outermost. Heap-allocated, safe to
/// share between threads; free with `stockade_pipeline_free`.
pub struct stockade_pipeline {
    inner: DynPipeline,
}

/// `*out` = a pipeline of the `n` policies in `stages` (from the handles'
/// `_as_policy`), `stages[0]` outermost: e.g. limiter, breaker, retry,
/// timeout. The pipeline holds its own references: the policies may be
/// freed right after. `n` = 0 makes a pipeline that just runs the
/// callback.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`out`, `stages` with `n` > 0, or a
///   NULL element).
/// - Ownership: free `*out` with `stockade_pipeline_free`.
/// - Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `stages` points to `n` policy pointers (each live or NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_pipeline_new(
    stages: *const *const stockade_policy,
    n: usize,
    out: *mut *mut stockade_pipeline,
) -> stockade_status {
    ffi_boundary!({
        let out = Out::new(out)?;
        let stages: &[*const stockade_policy] = if n == 0 {
            &[]
        } else if stages.is_null() {
            return Err(stockade_status::NullArgument);
        } else {
            // SAFETY: `n` valid pointers (function contract).
            unsafe { core::slice::from_raw_parts(stages, n) }
        };
        let mut list: Vec<Arc<dyn DynPolicy>> = Vec::with_capacity(n);
        for &stage in stages {
            // SAFETY: each live or NULL (function contract).
            list.push(Arc::clone(&unsafe { arg(stage) }?.inner));
        }
        let p = stockade_pipeline {
            inner: DynPipeline::new(list),
        };
        // SAFETY: checked out-pointer.
        unsafe { out.write(Box::into_raw(Box::new(p))) };
        Ok(())
    })
}

/// `*out` = the pipeline as a stage of another pipeline (free with
/// `stockade_policy_free`): nested, its stages run where it sits, exactly
/// as if they were listed there (a stage's refusal reaches the outer
/// stages as itself). The view shares the pipeline's stages: the pipeline
/// may be freed right after.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread. Blocks:
///   no.
///
/// # Safety
///
/// `pipeline` live or NULL; `out` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_pipeline_as_policy(
    pipeline: *const stockade_pipeline,
    out: *mut *mut stockade_policy,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let p = unsafe { arg(pipeline) }?;
        let out = Out::new(out)?;
        let inner: Arc<dyn DynPolicy> = Arc::new(p.inner.clone());
        // SAFETY: checked out-pointer.
        unsafe { out.write(Box::into_raw(Box::new(stockade_policy { inner }))) };
        Ok(())
    })
}

/// Frees a pipeline (its patterns live on while other handles hold them).
/// NULL is a no-op.
///
/// - Thread safety: any thread, once, after every call on it returned.
///
/// # Safety
///
/// `pipeline` from `stockade_pipeline_new`, not freed before, or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_pipeline_free(pipeline: *mut stockade_pipeline) {
    // SAFETY: function contract.
    unsafe { super::free(pipeline) }
}

/// Runs `callback(user_data)` through every stage (outermost first): 0 is
/// a success, anything else a failure (retried by a retry stage, counted
/// by a breaker, ...). Without a timeout stage the callback runs on this
/// thread; stages inside a timeout run on its worker and **may still run
/// after this function returned `TIMED_OUT`** (a retry inside a timeout
/// may even start the callback again meanwhile). `release(user_data)`
/// (optional) is called exactly once, on every path, when stockade no
/// longer uses `user_data`: after the last run of the callback, or before
/// this function returns when the callback never runs (a refusal, a NULL
/// argument).
///
/// - Statuses: `OK`; `CALLBACK_FAILED`; any stage's refusal
///   (`BREAKER_OPEN`, `RATE_LIMITED`, `BULKHEAD_FULL`, `QUEUE_TIMEOUT`,
///   `TIMED_OUT`, `QUEUE_FULL`, `RETRIES_EXHAUSTED`, `DISPOSED`, ...);
///   `NULL_ARGUMENT` (`pipeline`, `callback`; `release` is called before
///   returning).
/// - Blocks: as its stages. Thread safety: any number of threads; the
///   callback may run on another thread, concurrently with itself, and
///   must not unwind.
///
/// # Safety
///
/// `pipeline` live; `callback` and `release` callable with `user_data`
/// from any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_pipeline_execute(
    pipeline: *const stockade_pipeline,
    callback: stockade_callback,
    user_data: *mut c_void,
    release: stockade_release_fn,
) -> stockade_status {
    ffi_boundary!({
        // First: every path below releases `user_data` once.
        let data = Release::new(user_data, release);
        // SAFETY: function contract.
        let p = unsafe { arg(pipeline) }?;
        let callback = callback.ok_or(stockade_status::NullArgument)?;
        let job = Detached::new(callback, data);
        let call: DynCall = Arc::new(move || match job.run() {
            Ok(()) => Ok(Box::new(()) as DynValue),
            Err(e) => Err(Box::new(e) as stockade_core::blocking::BoxError),
        });
        p.inner
            .execute_dyn(call)
            .map(drop)
            .map_err(|e| super::error_status(&e))
    })
}
