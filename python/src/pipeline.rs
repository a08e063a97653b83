//! `stockade.pipeline(*patterns)`: patterns composed at run time, the
//! first outermost (the blocking layer's `Pipeline::new().then(..)` order).
//!
//! Each pattern's `execute` receives a `Stage`: a native callable that
//! runs the rest of the pipeline. A stage says whether the protected
//! function is `async def`, so a pattern that has to wait before calling
//! it (bulkhead, limiter) knows to wait with asyncio.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::call::call;
use crate::wrap::{Target, is_async_callable, wrap};

/// Patterns composed, outermost first; callable as a decorator.
#[pyclass(module = "stockade", frozen, weakref)]
pub(crate) struct Pipeline {
    stages: Arc<[Target]>,
}

/// The rest of a pipeline for one call.
#[pyclass(module = "stockade._stockade", frozen)]
pub(crate) struct Stage {
    stages: Arc<[Target]>,
    next: usize,
    func: Py<PyAny>,
    args: Py<PyTuple>,
    kwargs: Option<Py<PyDict>>,
    is_async: bool,
}

impl Stage {
    pub(crate) fn is_async(&self) -> bool {
        self.is_async
    }
}

#[pymethods]
impl Stage {
    fn __call__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let func = self.func.bind(py);
        let args = self.args.bind(py);
        let kwargs = self.kwargs.as_ref().map(|k| k.bind(py));
        match self.stages.get(self.next) {
            None => call(func, args, kwargs),
            Some(target) => {
                let rest = Bound::new(
                    py,
                    Stage {
                        stages: Arc::clone(&self.stages),
                        next: self.next + 1,
                        func: self.func.clone_ref(py),
                        args: self.args.clone_ref(py),
                        kwargs: self.kwargs.as_ref().map(|k| k.clone_ref(py)),
                        is_async: self.is_async,
                    },
                )?;
                target.execute(py, rest.as_any(), &PyTuple::empty(py), None)
            }
        }
    }
}

impl Pipeline {
    pub(crate) fn run<'py>(
        slf: &Bound<'py, Pipeline>,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        if this.stages.is_empty() {
            return call(func, args, kwargs);
        }
        let is_async = is_async_callable(func)?;
        let stage = Stage {
            stages: Arc::clone(&this.stages),
            next: 0,
            func: func.clone().unbind(),
            args: args.clone().unbind(),
            kwargs: kwargs.map(|k| k.clone().unbind()),
            is_async,
        };
        Bound::new(py, stage)?.call0()
    }
}

#[pymethods]
impl Pipeline {
    #[new]
    #[pyo3(signature = (*patterns))]
    fn new(patterns: &Bound<'_, PyTuple>) -> PyResult<Pipeline> {
        let stages = patterns
            .iter()
            .map(|p| Target::from_pattern(&p))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Pipeline {
            stages: stages.into(),
        })
    }

    /// Runs `func(*args, **kwargs)` through every pattern, the first
    /// outermost. With an `async def` function, returns an awaitable.
    #[pyo3(signature = (func, /, *args, **kwargs))]
    fn execute<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Pipeline::run(slf, func, args, kwargs)
    }

    /// `func` protected by the whole pipeline.
    fn wrap<'py>(slf: &Bound<'py, Self>, func: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        wrap(Target::Pipeline(slf.clone().unbind()), func)
    }

    /// `@pipeline(a, b)` as a decorator: the same as `wrap`.
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        wrap(Target::Pipeline(slf.clone().unbind()), func)
    }

    /// The patterns, outermost first.
    #[getter]
    fn patterns<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.stages.iter().map(|t| t.object(py)))
    }

    fn __len__(&self) -> usize {
        self.stages.len()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let parts = self
            .stages
            .iter()
            .map(|t| Ok(t.object(py).repr()?.to_string()))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(format!("pipeline({})", parts.join(", ")))
    }
}
