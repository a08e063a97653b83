//! Decorators: `pattern.wrap(fn)` / `@pattern`.
//!
//! A plain function becomes a native callable (`Protected`) that calls the
//! pattern's `execute` directly, with `functools.update_wrapper` applied
//! and `__get__` so it also decorates methods. An `async def` function
//! becomes an `async def` wrapper (so `inspect.iscoroutinefunction` still
//! says so) built by `stockade._aio.wrap_async`.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};

use crate::breaker::CircuitBreaker;
use crate::bulkhead::Bulkhead;
use crate::call::aio;
use crate::limiter::RateLimiter;
use crate::pipeline::{Pipeline, Stage};
use crate::retry::Retry;
use crate::timeout::Timeout;

/// The pattern a wrapper calls.
pub(crate) enum Target {
    Retry(Py<Retry>),
    Breaker(Py<CircuitBreaker>),
    Limiter(Py<RateLimiter>),
    Bulkhead(Py<Bulkhead>),
    Timeout(Py<Timeout>),
    Pipeline(Py<Pipeline>),
    /// Any object with `execute(fn, *args, **kwargs)` (a pipeline, a
    /// pattern implemented in Python).
    Generic(Py<PyAny>),
}

impl Target {
    /// The native pattern `obj` is, or any object with an `execute`
    /// method.
    pub(crate) fn from_pattern(obj: &Bound<'_, PyAny>) -> PyResult<Target> {
        if let Ok(p) = obj.cast::<Retry>() {
            return Ok(Target::Retry(p.clone().unbind()));
        }
        if let Ok(p) = obj.cast::<CircuitBreaker>() {
            return Ok(Target::Breaker(p.clone().unbind()));
        }
        if let Ok(p) = obj.cast::<RateLimiter>() {
            return Ok(Target::Limiter(p.clone().unbind()));
        }
        if let Ok(p) = obj.cast::<Bulkhead>() {
            return Ok(Target::Bulkhead(p.clone().unbind()));
        }
        if let Ok(p) = obj.cast::<Timeout>() {
            return Ok(Target::Timeout(p.clone().unbind()));
        }
        if let Ok(p) = obj.cast::<Pipeline>() {
            return Ok(Target::Pipeline(p.clone().unbind()));
        }
        if obj.hasattr("execute")? {
            return Ok(Target::Generic(obj.clone().unbind()));
        }
        Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "pipeline: {} is not a pattern (it has no execute method)",
            obj.repr()?
        )))
    }

    fn clone_ref(&self, py: Python<'_>) -> Target {
        match self {
            Target::Retry(p) => Target::Retry(p.clone_ref(py)),
            Target::Breaker(p) => Target::Breaker(p.clone_ref(py)),
            Target::Limiter(p) => Target::Limiter(p.clone_ref(py)),
            Target::Bulkhead(p) => Target::Bulkhead(p.clone_ref(py)),
            Target::Timeout(p) => Target::Timeout(p.clone_ref(py)),
            Target::Pipeline(p) => Target::Pipeline(p.clone_ref(py)),
            Target::Generic(p) => Target::Generic(p.clone_ref(py)),
        }
    }

    pub(crate) fn object<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        match self {
            Target::Retry(p) => p.bind(py).clone().into_any(),
            Target::Breaker(p) => p.bind(py).clone().into_any(),
            Target::Limiter(p) => p.bind(py).clone().into_any(),
            Target::Bulkhead(p) => p.bind(py).clone().into_any(),
            Target::Timeout(p) => p.bind(py).clone().into_any(),
            Target::Pipeline(p) => p.bind(py).clone().into_any(),
            Target::Generic(p) => p.bind(py).clone(),
        }
    }

    /// `pattern.execute(func, *args, **kwargs)`.
    #[inline]
    pub(crate) fn execute<'py>(
        &self,
        py: Python<'py>,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Target::Retry(p) => Retry::run(p.bind(py), func, args, kwargs),
            Target::Breaker(p) => CircuitBreaker::run(p.bind(py), func, args, kwargs),
            Target::Limiter(p) => RateLimiter::run(p.bind(py), func, args, kwargs),
            Target::Bulkhead(p) => Bulkhead::run(p.bind(py), func, args, kwargs),
            Target::Timeout(p) => Timeout::run(p.bind(py), func, args, kwargs),
            Target::Pipeline(p) => Pipeline::run(p.bind(py), func, args, kwargs),
            Target::Generic(p) => {
                let mut all = Vec::with_capacity(args.len() + 1);
                all.push(func.clone());
                all.extend(args.iter());
                p.bind(py)
                    .getattr(pyo3::intern!(py, "execute"))?
                    .call(PyTuple::new(py, all)?, kwargs)
            }
        }
    }
}

/// A function protected by a pattern (what `@pattern` returns for a
/// plain function).
#[pyclass(module = "stockade", frozen, dict, weakref)]
pub(crate) struct Protected {
    target: Target,
    func: Py<PyAny>,
}

#[pymethods]
impl Protected {
    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.target.execute(py, self.func.bind(py), args, kwargs)
    }

    /// Binds like a function, so a decorated method gets `self`.
    fn __get__<'py>(
        slf: &Bound<'py, Self>,
        instance: Option<&Bound<'py, PyAny>>,
        owner: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = owner;
        let py = slf.py();
        let Some(instance) = instance.filter(|i| !i.is_none()) else {
            return Ok(slf.clone().into_any());
        };
        static METHOD_TYPE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        METHOD_TYPE
            .import(py, "types", "MethodType")?
            .call1((slf, instance))
    }

    /// The pattern.
    #[getter]
    fn pattern<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.target.object(py)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "<protected {} by {}>",
            self.func.bind(py).repr()?,
            self.target.object(py).repr()?
        ))
    }
}

/// `func` wrapped by `target`.
pub(crate) fn wrap<'py>(target: Target, func: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = func.py();
    if !func.is_callable() {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "expected a callable to protect, got {}",
            func.repr()?
        )));
    }
    if is_async_callable(func)? {
        static WRAP_ASYNC: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let execute = target.object(py).getattr("execute")?;
        return aio(py, &WRAP_ASYNC, "wrap_async")?.call1((execute, func));
    }
    let wrapper = Bound::new(
        py,
        Protected {
            target: target.clone_ref(py),
            func: func.clone().unbind(),
        },
    )?;
    static UPDATE_WRAPPER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    UPDATE_WRAPPER
        .import(py, "functools", "update_wrapper")?
        .call1((&wrapper, func))?;
    Ok(wrapper.into_any())
}

/// `true` if calling `func` gives an awaitable: an `async def` function
/// (seen through `functools.partial`, bound methods, async `__call__`), a
/// pipeline stage or protected function over one.
pub(crate) fn is_async_callable(func: &Bound<'_, PyAny>) -> PyResult<bool> {
    if let Ok(stage) = func.cast::<Stage>() {
        return Ok(stage.get().is_async());
    }
    if let Ok(protected) = func.cast::<Protected>() {
        return is_async_callable(protected.get().func.bind(func.py()));
    }
    static IS_ASYNC: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    aio(func.py(), &IS_ASYNC, "is_async_callable")?
        .call1((func,))?
        .is_truthy()
}
