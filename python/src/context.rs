//! What a `with pattern:` block holds between `__enter__` and `__exit__`
//! (a breaker token, a bulkhead permit), kept per thread and per asyncio
//! task: a `contextvars.ContextVar` holding a linked stack, so nested and
//! concurrent blocks on one pattern each get their own.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;

pub(crate) struct ContextStack {
    var: Py<PyAny>,
}

impl ContextStack {
    pub(crate) fn new(py: Python<'_>, name: &str) -> PyResult<ContextStack> {
        static CONTEXT_VAR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let var = CONTEXT_VAR
            .import(py, "contextvars", "ContextVar")?
            .call1((format!("stockade:{name}"),))?;
        Ok(ContextStack { var: var.unbind() })
    }

    /// Pushes `item` for the current thread or task.
    pub(crate) fn push(&self, py: Python<'_>, item: Bound<'_, PyAny>) -> PyResult<()> {
        let var = self.var.bind(py);
        let below = var.call_method1("get", (py.None(),))?;
        var.call_method1("set", (PyTuple::new(py, [item, below])?,))?;
        Ok(())
    }

    /// Pops the item of the innermost open block of the current thread or
    /// task.
    pub(crate) fn pop<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let var = self.var.bind(py);
        let top = var.call_method1("get", (py.None(),))?;
        if top.is_none() {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "__exit__ without a matching __enter__ in this thread or task",
            ));
        }
        let item = top.get_item(0)?;
        var.call_method1("set", (top.get_item(1)?,))?;
        Ok(item)
    }
}
