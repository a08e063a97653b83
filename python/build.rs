//! Exposes PyO3's interpreter cfgs (`Py_3_10`, ...) to the crate: the
//! awaitable wrapper drives coroutines with `PyIter_Send` where it exists.
fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
