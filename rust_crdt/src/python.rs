//! The Python binding, `syncd._crdt`: thin wrappers that convert between Python objects
//! and the core's types, release the GIL around long work, and raise
//! `syncd.errors.CrdtError` for every core error.

use std::borrow::Cow;
use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::{PyKeyError, PyUnicodeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyMapping, PyString, PyTuple};
use serde_json::{Map, Number, Value};

use crate::canonical::{canonical_text, canonicalize};
use crate::clock::{wall_clock_ms, Clock};
use crate::document::{Document, EntryView, MergeOutcome};
use crate::entry::{Entry, Limits, MAX_KEY_BYTES};
use crate::error::CrdtError;
use crate::frame::{broadcast_json, frame_type, FrameOutcome, SkewCheck, MAX_ID};
use crate::persist::log_line;
use crate::timestamp::{validate_node, Timestamp};

mod exceptions {
    pyo3::import_exception!(syncd.errors, CrdtError);
}
use exceptions::CrdtError as PyCrdtError;

/// The deepest nesting of containers a value may have: the most serde_json reads back.
const MAX_DEPTH: usize = 127;

fn to_py_err(error: CrdtError) -> PyErr {
    PyCrdtError::new_err((error.message, error.code.as_str(), error.entry, error.id))
}

fn bad(message: impl Into<String>) -> PyErr {
    to_py_err(CrdtError::bad_message(message))
}

/// Locks a mutex; a poisoned lock is still usable because the core never leaves a
/// document half-updated across a panic point that Python could observe.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A Python object as a JSON value, refusing what JSON cannot carry: non-finite floats,
/// non-string dict keys, strings with unpaired surrogates, other types.
fn json_from_py(obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
    let too_deep = || bad(format!("value nests deeper than {MAX_DEPTH} levels"));
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(i) = obj.cast::<PyInt>() {
        if let Ok(n) = i.extract::<i64>() {
            return Ok(Value::from(n));
        }
        if let Ok(n) = i.extract::<u64>() {
            return Ok(Value::from(n));
        }
        let f: f64 = i.extract().map_err(|_| bad("integer overflows a double"))?;
        return finite(f);
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return finite(f.value());
    }
    if let Ok(s) = obj.cast::<PyString>() {
        let s = s
            .to_str()
            .map_err(|_| bad("string is not valid Unicode (unpaired surrogate?)"))?;
        return Ok(Value::String(s.to_owned()));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        if depth >= MAX_DEPTH {
            return Err(too_deep());
        }
        let mut map = Map::new();
        for (k, v) in dict.iter() {
            let k = k
                .cast::<PyString>()
                .map_err(|_| bad("object keys must be strings"))?
                .to_str()
                .map_err(|_| bad("object key is not valid Unicode"))?
                .to_owned();
            map.insert(k, json_from_py(&v, depth + 1)?);
        }
        return Ok(Value::Object(map));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        if depth >= MAX_DEPTH {
            return Err(too_deep());
        }
        return obj
            .try_iter()?
            .map(|item| json_from_py(&item?, depth + 1))
            .collect::<PyResult<Vec<_>>>()
            .map(Value::Array);
    }
    Err(bad(format!(
        "a {} is not a JSON value",
        obj.get_type().name()?
    )))
}

fn finite(f: f64) -> PyResult<Value> {
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| bad("numbers must be finite (no NaN or Infinity)"))
}

/// The canonical JSON text of a Python value.
fn canonical_from_py(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    canonical_text(&json_from_py(obj, 0)?).map_err(to_py_err)
}

/// A Python object from canonical JSON text the core produced.
fn py_from_json<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    let value: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    pythonize::pythonize(py, &value).map_err(|e| bad(e.to_string()))
}

/// A `str` argument. One that is not valid Unicode (it holds an unpaired surrogate) is a
/// `CrdtError` like any other invalid input, not a `UnicodeEncodeError`.
struct Utf8<'a>(&'a str);

impl<'a> FromPyObject<'a, '_> for Utf8<'a> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, '_, PyAny>) -> PyResult<Self> {
        let py = obj.py();
        <&'a str as FromPyObject<'a, '_>>::extract(obj)
            .map(Utf8)
            .map_err(|e| {
                if e.is_instance_of::<PyUnicodeError>(py) {
                    bad("string is not valid Unicode (an unpaired surrogate?)")
                } else {
                    e
                }
            })
    }
}

/// A key to look up: one that is not valid Unicode can never be stored, so it is absent.
fn lookup_key<'a>(key: &'a Bound<'_, PyString>) -> Option<&'a str> {
    key.to_str().ok()
}

fn parse_ts(text: &str) -> PyResult<Timestamp> {
    Timestamp::parse(text).map_err(to_py_err)
}

/// A wire-form entry given as a Python mapping (`key`, `ts`, `value` or `deleted: True`,
/// and `seq` when `with_seq`).
fn entry_from_py(obj: &Bound<'_, PyAny>, limits: &Limits) -> PyResult<Entry<'static>> {
    let map = obj
        .cast::<PyMapping>()
        .map_err(|_| bad("an entry must be a mapping"))?;
    let field = |name: &str| -> PyResult<Option<Bound<'_, PyAny>>> {
        match map.get_item(name) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_instance_of::<PyKeyError>(obj.py()) => Ok(None),
            Err(e) => Err(e),
        }
    };
    let key: String = field("key")?
        .ok_or_else(|| bad("missing \"key\""))?
        .extract()
        .map_err(|_| bad("\"key\" must be a string"))?;
    let ts: String = field("ts")?
        .ok_or_else(|| bad("missing \"ts\""))?
        .extract()
        .map_err(|_| bad("\"ts\" must be a string"))?;
    let ts = parse_ts(&ts)?;
    let value = match (field("value")?, field("deleted")?) {
        (Some(_), Some(_)) => return Err(bad("an entry has \"value\" or \"deleted\", never both")),
        (None, None) => return Err(bad("an entry needs \"value\" or \"deleted\": True")),
        (None, Some(d)) if !d.is(PyBool::new(obj.py(), true)) => {
            return Err(bad("\"deleted\", when present, must be True"))
        }
        (None, Some(_)) => None,
        (Some(v), None) => Some(Cow::Owned(canonical_from_py(&v)?)),
    };
    Entry::new(key, ts, value, limits).map_err(to_py_err)
}

/// Converts each item, naming the offending one in the error.
fn entries_from_py<T>(
    items: &Bound<'_, PyAny>,
    mut convert: impl FnMut(&Bound<'_, PyAny>) -> PyResult<T>,
) -> PyResult<Vec<T>> {
    let mut out = Vec::new();
    for (i, item) in items.try_iter()?.enumerate() {
        let item = item?;
        out.push(convert(&item).map_err(|e| {
            if e.is_instance_of::<PyCrdtError>(items.py()) {
                let value = e.value(items.py());
                let message: String = value
                    .getattr("args")
                    .and_then(|a| a.get_item(0))
                    .and_then(|m| m.extract())
                    .unwrap_or_default();
                let code: String = value
                    .getattr("code")
                    .and_then(|c| c.extract())
                    .unwrap_or_else(|_| "bad_message".into());
                PyCrdtError::new_err((
                    format!("entries[{i}]: {message}"),
                    code,
                    Some(i),
                    None::<u64>,
                ))
            } else {
                e
            }
        })?);
    }
    Ok(out)
}

/// One entry of a document, live or tombstone, with the seq it took.
#[pyclass(module = "syncd._crdt", name = "Entry", frozen, get_all)]
struct PyEntry {
    key: String,
    ts: String,
    value: Py<PyAny>,
    deleted: bool,
    seq: u64,
    value_json: Option<String>,
}

/// An entry copied out of a document, so that Python objects are made after the
/// document's lock is released.
struct Copied {
    key: String,
    ts: String,
    value: Option<String>,
    seq: u64,
}

impl Copied {
    fn of(view: &EntryView<'_>) -> Self {
        Copied {
            key: view.key.to_owned(),
            ts: view.ts().to_string(),
            value: view.value.map(str::to_owned),
            seq: view.seq,
        }
    }

    fn into_py(self, py: Python<'_>) -> PyResult<PyEntry> {
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
struct PyMergeResult {
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
struct PyFrameResult(FrameOutcome);

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

/// A Last-Write-Wins element dictionary, safe to share between threads.
///
/// The document's lock is only ever taken with the GIL released, and no Python code runs
/// while it is held: a thread waiting for it never holds the GIL that its holder needs.
#[pyclass(module = "syncd._crdt", name = "Document", frozen)]
struct PyDocument {
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
    #[pyo3(signature = (*, max_value_bytes = 65_536, max_ops = 1000))]
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

    #[pyo3(signature = (text, *, now_ms = None, max_skew_ms = 60_000))]
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

    #[pyo3(signature = (since = None, max_frame_bytes = 1_048_576))]
    fn entries_frames(
        &self,
        py: Python<'_>,
        since: Option<u64>,
        max_frame_bytes: usize,
    ) -> Vec<String> {
        self.with(py, |doc| doc.entries_frames(since, max_frame_bytes))
    }

    fn purge_tombstones(&self, py: Python<'_>, before: Utf8<'_>) -> PyResult<usize> {
        let before = parse_ts(before.0)?;
        Ok(self.with(py, |doc| doc.purge_tombstones(&before)))
    }

    fn snapshot(&self, py: Python<'_>) -> (u64, u64, String) {
        self.with(py, |doc| (doc.seq(), doc.horizon(), doc.table_json()))
    }

    fn restore_file_json(&self, py: Python<'_>, text: Utf8<'_>) -> PyResult<String> {
        self.with(py, |doc| doc.restore_file_json(text.0))
            .map_err(to_py_err)
    }

    #[pyo3(signature = (text, *, after = 0))]
    fn restore_log_json(&self, py: Python<'_>, text: Utf8<'_>, after: u64) -> PyResult<usize> {
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

/// A Hybrid Logical Clock for one replica, safe to share between threads.
#[pyclass(module = "syncd._crdt", name = "Clock", frozen)]
struct PyClock(Mutex<Clock>);

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

#[pyfunction(name = "broadcast_frame")]
fn py_broadcast_frame(seq: u64, origin: Utf8<'_>, ops_json: Utf8<'_>) -> String {
    broadcast_json(seq, origin.0, ops_json.0)
}

#[pyfunction(name = "frame_type")]
fn py_frame_type(text: Utf8<'_>) -> PyResult<String> {
    frame_type(text.0).map_err(to_py_err)
}

#[pyfunction]
fn parse_timestamp(ts: Utf8<'_>) -> PyResult<(u64, u32, String)> {
    let ts = parse_ts(ts.0)?;
    Ok((ts.wall(), ts.counter(), ts.node().to_owned()))
}

#[pyfunction]
fn format_timestamp(wall: u64, counter: u32, node: Utf8<'_>) -> PyResult<String> {
    Timestamp::new(wall, counter, node.0)
        .map(|t| t.to_string())
        .map_err(to_py_err)
}

#[pyfunction(name = "validate_node")]
fn py_validate_node(node: Utf8<'_>) -> PyResult<()> {
    validate_node(node.0).map_err(to_py_err)
}

#[pyfunction]
fn canonical_json(value: &Bound<'_, PyAny>) -> PyResult<String> {
    canonical_from_py(value)
}

#[pyfunction]
fn canonicalize_json(text: Utf8<'_>) -> PyResult<String> {
    canonicalize(text.0).map(Cow::into_owned).map_err(to_py_err)
}

#[pyfunction(name = "wall_clock_ms")]
fn py_wall_clock_ms() -> u64 {
    wall_clock_ms()
}

#[pymodule]
fn _crdt(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDocument>()?;
    m.add_class::<PyEntry>()?;
    m.add_class::<PyMergeResult>()?;
    m.add_class::<PyFrameResult>()?;
    m.add_class::<PyClock>()?;
    m.add_function(wrap_pyfunction!(py_frame_type, m)?)?;
    m.add_function(wrap_pyfunction!(py_broadcast_frame, m)?)?;
    m.add_function(wrap_pyfunction!(parse_timestamp, m)?)?;
    m.add_function(wrap_pyfunction!(format_timestamp, m)?)?;
    m.add_function(wrap_pyfunction!(py_validate_node, m)?)?;
    m.add_function(wrap_pyfunction!(canonical_json, m)?)?;
    m.add_function(wrap_pyfunction!(canonicalize_json, m)?)?;
    m.add_function(wrap_pyfunction!(py_wall_clock_ms, m)?)?;
    m.add("MAX_KEY_BYTES", MAX_KEY_BYTES)?;
    m.add("MAX_ID", MAX_ID)?;
    Ok(())
}
