//! The `Clock` class: a Hybrid Logical Clock for one replica, shared between threads.

use std::sync::Mutex;

use pyo3::prelude::*;

use super::convert::{parse_ts, Utf8};
use super::errors::to_py_err;
use super::lock::lock;
use crate::clock::Clock;

/// A Hybrid Logical Clock for one replica, safe to share between threads.
#[pyclass(module = "syncd._crdt", name = "Clock", frozen)]
pub(super) struct PyClock(Mutex<Clock>);

impl PyClock {
    fn with<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut Clock) -> R + Send) -> R {
        py.detach(|| f(&mut lock(&self.0)))
    }
}

#[pymethods]
impl PyClock {
    #[new]
    fn new(node: Utf8<'_>) -> PyResult<Self> {
        Clock::new(node.0)
            .map(|c| PyClock(Mutex::new(c)))
            .map_err(to_py_err)
    }

    #[getter]
    fn node(&self, py: Python<'_>) -> String {
        self.with(py, |clock| clock.node().to_owned())
    }

    #[getter]
    fn last(&self, py: Python<'_>) -> (u64, u32) {
        self.with(py, |clock| clock.last())
    }

    fn now(&self, py: Python<'_>) -> PyResult<String> {
        self.with(py, |clock| clock.now().map(|t| t.to_string()))
            .map_err(to_py_err)
    }

    fn tick(&self, py: Python<'_>, physical_ms: u64) -> PyResult<String> {
        self.with(py, |clock| clock.tick(physical_ms).map(|t| t.to_string()))
            .map_err(to_py_err)
    }

    fn observe(&self, py: Python<'_>, ts: Utf8<'_>) -> PyResult<()> {
        let ts = parse_ts(ts.0)?;
        self.with(py, |clock| clock.observe(&ts));
        Ok(())
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        self.with(py, |clock| {
            let (wall, counter) = clock.last();
            format!(
                "Clock(node={:?}, last={wall:013}-{counter:05})",
                clock.node()
            )
        })
    }
}
