//! The `Document` class: a Last-Write-Wins element dictionary shared between threads,
//! with the GIL released whenever its lock is held.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString};

use super::convert::{
    canonical_from_py, entries_from_py, entry_from_py, lookup_key, parse_ts, py_from_json, Utf8,
    Utf8OrBytes,
};
use super::errors::{bad, load_err, to_py_err};
use super::lock::lock;
use super::results::{Copied, PyEntry, PyFrameResult, PyMergeResult};
use crate::document::Document;
use crate::entry::{Entry, Limits, DEFAULT_MAX_OPS, DEFAULT_MAX_VALUE_BYTES};
use crate::frame::{SkewCheck, DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_SKEW_MS};
use crate::persist::READ_CHUNK;

/// A Last-Write-Wins element dictionary, safe to share between threads.
///
/// The document's lock is only ever taken with the GIL released, and no Python code runs
/// while it is held: a thread waiting for it never holds the GIL that its holder needs.
#[pyclass(module = "syncd._crdt", name = "Document", frozen)]
pub(super) struct PyDocument {
    inner: Mutex<Document>,
    limits: Limits,
}

impl PyDocument {
    /// Runs `f` on the document under its lock, with the GIL released.
    fn with<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut Document) -> R + Send) -> R {
        py.detach(|| f(&mut lock(&self.inner)))
    }

    fn value_of<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'_, PyString>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(key) = lookup_key(key) else {
            return Ok(None);
        };
        let text = self.with(py, |doc| doc.lookup(key).map(str::to_owned));
        text.map(|text| py_from_json(py, &text)).transpose()
    }
}

#[pymethods]
impl PyDocument {
    #[new]
    #[pyo3(signature = (*, max_value_bytes = DEFAULT_MAX_VALUE_BYTES, max_ops = DEFAULT_MAX_OPS))]
    fn new(max_value_bytes: usize, max_ops: usize) -> Self {
        let limits = Limits {
            max_value_bytes,
            max_ops,
        };
        PyDocument {
            inner: Mutex::new(Document::new(limits)),
            limits,
        }
    }

    #[getter]
    fn seq(&self, py: Python<'_>) -> u64 {
        self.with(py, |doc| doc.seq())
    }

    #[getter]
    fn horizon(&self, py: Python<'_>) -> u64 {
        self.with(py, |doc| doc.horizon())
    }

    #[getter]
    fn digest(&self, py: Python<'_>) -> u64 {
        self.with(py, |doc| doc.digest())
    }

    #[getter]
    fn tombstone_count(&self, py: Python<'_>) -> usize {
        self.with(py, |doc| doc.tombstone_count())
    }

    #[getter]
    fn max_value_bytes(&self) -> usize {
        self.limits.max_value_bytes
    }

    #[getter]
    fn max_ops(&self) -> usize {
        self.limits.max_ops
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.with(py, |doc| doc.live_count())
    }

    fn __contains__(&self, py: Python<'_>, key: &Bound<'_, PyString>) -> bool {
        lookup_key(key).is_some_and(|key| self.with(py, |doc| doc.lookup(key).is_some()))
    }

    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'_, PyString>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.value_of(py, key)?
            .ok_or_else(|| PyKeyError::new_err(key.clone().unbind()))
    }

    #[pyo3(signature = (key, default = None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'_, PyString>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Ok(self
            .value_of(py, key)?
            .unwrap_or_else(|| default.unwrap_or_else(|| py.None().into_bound(py))))
    }

    fn entry(&self, py: Python<'_>, key: &Bound<'_, PyString>) -> PyResult<Option<PyEntry>> {
        let Some(key) = lookup_key(key) else {
            return Ok(None);
        };
        let copied = self.with(py, |doc| doc.get(key).map(|v| Copied::of(&v)));
        copied.map(|c| c.into_py(py)).transpose()
    }

    fn set(
        &self,
        py: Python<'_>,
        key: Utf8<'_>,
        value: &Bound<'_, PyAny>,
        ts: Utf8<'_>,
    ) -> PyResult<bool> {
        let text = canonical_from_py(value)?;
        let entry = Entry::new(key.0, parse_ts(ts.0)?, Some(text.into()), &self.limits)
            .map_err(to_py_err)?;
        Ok(self.with(py, |doc| doc.merge(&entry)))
    }

    fn remove(&self, py: Python<'_>, key: Utf8<'_>, ts: Utf8<'_>) -> PyResult<bool> {
        let entry = Entry::new(key.0, parse_ts(ts.0)?, None, &self.limits).map_err(to_py_err)?;
        Ok(self.with(py, |doc| doc.merge(&entry)))
    }

    fn keys(&self, py: Python<'_>) -> Vec<String> {
        let mut keys: Vec<String> = self.with(py, |doc| doc.keys().map(str::to_owned).collect());
        py.detach(|| keys.sort_unstable());
        keys
    }

    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let mut pairs: Vec<(String, String)> = self.with(py, |doc| {
            doc.entries()
                .filter_map(|e| e.value.map(|v| (e.key.to_owned(), v.to_owned())))
                .collect()
        });
        py.detach(|| pairs.sort_unstable());
        let dict = PyDict::new(py);
        for (key, text) in pairs {
            dict.set_item(key, py_from_json(py, &text)?)?;
        }
        Ok(dict)
    }

    fn merge(&self, py: Python<'_>, other: &PyDocument) -> PyMergeResult {
        let theirs: Vec<Entry<'static>> = other.with(py, |doc| {
            doc.changes_since(0).map(|e| e.to_entry()).collect()
        });
        self.with(py, |doc| doc.merge_all(&theirs).into())
    }

    fn merge_entries(&self, py: Python<'_>, entries: &Bound<'_, PyAny>) -> PyResult<PyMergeResult> {
        let entries = entries_from_py(entries, |e| entry_from_py(e, &self.limits))?;
        Ok(self.with(py, |doc| doc.merge_all(&entries).into()))
    }

    #[pyo3(signature = (text, *, now_ms = None, max_skew_ms = DEFAULT_MAX_SKEW_MS))]
    fn apply_frame(
        &self,
        py: Python<'_>,
        text: Utf8<'_>,
        now_ms: Option<u64>,
        max_skew_ms: u64,
    ) -> PyResult<PyFrameResult> {
        let skew = now_ms.map(|now_ms| SkewCheck {
            now_ms,
            max_skew_ms,
        });
        self.with(py, |doc| doc.apply_frame(text.0, skew))
            .map(PyFrameResult)
            .map_err(to_py_err)
    }

    fn changes_since(&self, py: Python<'_>, seq: u64) -> PyResult<Vec<PyEntry>> {
        let copied: Vec<Copied> = self.with(py, |doc| {
            doc.changes_since(seq).map(|v| Copied::of(&v)).collect()
        });
        copied.into_iter().map(|c| c.into_py(py)).collect()
    }

    #[pyo3(signature = (since = None, max_frame_bytes = DEFAULT_MAX_FRAME_BYTES))]
    fn entries_frames(
        &self,
        py: Python<'_>,
        since: Option<u64>,
        max_frame_bytes: usize,
    ) -> Vec<String> {
        self.with(py, |doc| doc.entries_frames(since, max_frame_bytes))
    }

    #[pyo3(signature = (after, until, max_frame_bytes = DEFAULT_MAX_FRAME_BYTES))]
    fn entries_frame(
        &self,
        py: Python<'_>,
        after: u64,
        until: u64,
        max_frame_bytes: usize,
    ) -> Option<(String, u64)> {
        self.with(py, |doc| doc.entries_frame(after, until, max_frame_bytes))
    }

    fn write_file(&self, py: Python<'_>, path: PathBuf, fields: Utf8<'_>) -> PyResult<u64> {
        let fields: serde_json::Map<String, serde_json::Value> = serde_json::from_str(fields.0)
            .map_err(|e| bad(format!("meta fields must be a JSON object: {e}")))?;
        self.with(py, |doc| {
            let mut file = File::create(&path)?;
            doc.write_file_json(&mut file, &fields)
        })
        .map_err(PyErr::from)
    }

    fn purge_tombstones(&self, py: Python<'_>, before: Utf8<'_>) -> PyResult<usize> {
        let before = parse_ts(before.0)?;
        Ok(self.with(py, |doc| doc.purge_tombstones(&before)))
    }

    fn snapshot(&self, py: Python<'_>) -> (u64, u64, String) {
        self.with(py, |doc| (doc.seq(), doc.horizon(), doc.table_json()))
    }

    fn restore_file_json(&self, py: Python<'_>, text: Utf8OrBytes<'_>) -> PyResult<String> {
        self.with(py, |doc| doc.restore_file_json(text.0))
            .map_err(to_py_err)
    }

    fn restore_file(&self, py: Python<'_>, path: PathBuf) -> PyResult<String> {
        self.with(py, |doc| doc.restore_file(File::open(&path)?))
            .map_err(load_err)
    }

    #[pyo3(signature = (path, *, after = 0))]
    fn restore_log(&self, py: Python<'_>, path: PathBuf, after: u64) -> PyResult<(usize, usize)> {
        self.with(py, |doc| {
            let file = BufReader::with_capacity(READ_CHUNK, File::open(&path)?);
            doc.restore_log(file, after)
        })
        .map(|replay| (replay.entries, replay.torn))
        .map_err(load_err)
    }

    #[pyo3(signature = (text, *, after = 0))]
    fn restore_log_json(
        &self,
        py: Python<'_>,
        text: Utf8OrBytes<'_>,
        after: u64,
    ) -> PyResult<usize> {
        self.with(py, |doc| doc.restore_log_json(text.0, after))
            .map_err(to_py_err)
    }

    #[pyo3(signature = (entries, *, head, horizon = 0))]
    fn restore(
        &self,
        py: Python<'_>,
        entries: &Bound<'_, PyAny>,
        head: u64,
        horizon: u64,
    ) -> PyResult<()> {
        let batch = entries_from_py(entries, |e| {
            let seq = e
                .get_item("seq")
                .ok()
                .filter(|s| !s.is_instance_of::<PyBool>())
                .and_then(|s| s.extract::<u64>().ok())
                .ok_or_else(|| bad("a restored entry needs an integer \"seq\""))?;
            Ok((entry_from_py(e, &self.limits)?, seq))
        })?;
        self.with(py, |doc| {
            doc.restore_all(batch)?;
            doc.set_position(head, horizon)
        })
        .map_err(to_py_err)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        self.with(py, |doc| {
            format!(
                "Document(live={}, tombstones={}, seq={}, horizon={})",
                doc.live_count(),
                doc.tombstone_count(),
                doc.seq(),
                doc.horizon()
            )
        })
    }
}
