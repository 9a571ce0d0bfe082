//! The objects a `Document` hands back to Python: an `Entry`, a `MergeResult` and a
//! `FrameResult` with the frames to send.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::convert::{py_from_json, Utf8};
use crate::document::{EntryView, MergeOutcome};
use crate::frame::FrameOutcome;
use crate::persist::log_line;

/// One entry of a document, live or tombstone, with the seq it took.
#[pyclass(module = "syncd._crdt", name = "Entry", frozen, get_all)]
pub(super) struct PyEntry {
    key: String,
    ts: String,
    value: Py<PyAny>,
    deleted: bool,
    seq: u64,
    value_json: Option<String>,
}

/// An entry copied out of a document, so that Python objects are made after the
/// document's lock is released.
pub(super) struct Copied {
    key: String,
    ts: String,
    value: Option<String>,
    seq: u64,
}

impl Copied {
    pub(super) fn of(view: &EntryView<'_>) -> Self {
        Copied {
            key: view.key.to_owned(),
            ts: view.ts().to_string(),
            value: view.value.map(str::to_owned),
            seq: view.seq,
        }
    }

    pub(super) fn into_py(self, py: Python<'_>) -> PyResult<PyEntry> {
        let value = match &self.value {
            Some(text) => py_from_json(py, text)?.unbind(),
            None => py.None(),
        };
        Ok(PyEntry {
            key: self.key,
            ts: self.ts,
            value,
            deleted: self.value.is_none(),
            seq: self.seq,
            value_json: self.value,
        })
    }
}

#[pymethods]
impl PyEntry {
    /// The entry in its wire form: `{"key", "ts", "value"}` or `{"key", "ts", "deleted": True}`.
    fn to_wire<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let wire = PyDict::new(py);
        wire.set_item("key", &self.key)?;
        wire.set_item("ts", &self.ts)?;
        if self.deleted {
            wire.set_item("deleted", true)?;
        } else {
            wire.set_item("value", self.value.bind(py))?;
        }
        Ok(wire)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let value = if self.deleted {
            "deleted".to_owned()
        } else {
            format!("value={}", self.value.bind(py).repr()?)
        };
        Ok(format!(
            "Entry(key={:?}, ts={:?}, {value}, seq={})",
            self.key, self.ts, self.seq
        ))
    }
}

/// What merging a batch did.
#[pyclass(module = "syncd._crdt", name = "MergeResult", frozen, get_all)]
pub(super) struct PyMergeResult {
    applied: usize,
    ignored: usize,
    seq: u64,
}

impl From<MergeOutcome> for PyMergeResult {
    fn from(o: MergeOutcome) -> Self {
        PyMergeResult {
            applied: o.applied,
            ignored: o.ignored,
            seq: o.seq,
        }
    }
}

#[pymethods]
impl PyMergeResult {
    fn __repr__(&self) -> String {
        format!(
            "MergeResult(applied={}, ignored={}, seq={})",
            self.applied, self.ignored, self.seq
        )
    }
}

/// What applying an `ops` frame did, with the frames to send.
#[pyclass(module = "syncd._crdt", name = "FrameResult", frozen)]
pub(super) struct PyFrameResult(pub(super) FrameOutcome);

#[pymethods]
impl PyFrameResult {
    #[getter]
    fn id(&self) -> u64 {
        self.0.id
    }
    #[getter]
    fn applied(&self) -> usize {
        self.0.applied
    }
    #[getter]
    fn ignored(&self) -> usize {
        self.0.ignored
    }
    #[getter]
    fn seq(&self) -> u64 {
        self.0.seq
    }
    #[getter]
    fn ops_json(&self) -> &str {
        &self.0.ops_json
    }
    #[getter]
    fn lost(&self) -> Vec<(String, String)> {
        self.0.lost.clone()
    }
    fn ack(&self) -> String {
        self.0.ack_json()
    }
    fn broadcast(&self, origin: Utf8<'_>) -> Option<String> {
        self.0.broadcast_json(origin.0)
    }
    fn log_line(&self) -> Option<String> {
        (self.0.applied > 0).then(|| log_line(self.0.seq, &self.0.ops_json))
    }
    fn __repr__(&self) -> String {
        format!(
            "FrameResult(id={}, applied={}, ignored={}, seq={})",
            self.0.id, self.0.applied, self.0.ignored, self.0.seq
        )
    }
}
