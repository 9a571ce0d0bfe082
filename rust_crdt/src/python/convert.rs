//! Conversions between Python objects and the core's types: JSON values (refusing what
//! JSON cannot carry), `str` arguments, timestamps and wire-form entries.

use std::borrow::Cow;

use pyo3::exceptions::{PyKeyError, PyUnicodeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMapping, PyString, PyTuple};
use serde_json::{Map, Number, Value};

use super::errors::{bad, to_py_err, PyCrdtError};
use crate::canonical::canonical_text;
use crate::entry::{Entry, Limits};
use crate::timestamp::Timestamp;

/// The deepest nesting of containers a value may have: the most serde_json reads back.
const MAX_DEPTH: usize = 127;

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
pub(super) fn canonical_from_py(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    canonical_text(&json_from_py(obj, 0)?).map_err(to_py_err)
}

/// A Python object from canonical JSON text the core produced.
pub(super) fn py_from_json<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    let value: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    pythonize::pythonize(py, &value).map_err(|e| bad(e.to_string()))
}

/// A `str` argument. One that is not valid Unicode (it holds an unpaired surrogate) is a
/// `CrdtError` like any other invalid input, not a `UnicodeEncodeError`.
pub(super) struct Utf8<'a>(pub(super) &'a str);

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

/// A `str` argument, or `bytes` of UTF-8 text (read from a file, so that the text is not
/// decoded into a second copy first).
pub(super) struct Utf8OrBytes<'a>(pub(super) &'a str);

impl<'a> FromPyObject<'a, '_> for Utf8OrBytes<'a> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, '_, PyAny>) -> PyResult<Self> {
        if obj.is_instance_of::<PyBytes>() {
            let bytes = <&'a [u8] as FromPyObject<'a, '_>>::extract(obj)?;
            return std::str::from_utf8(bytes)
                .map(Utf8OrBytes)
                .map_err(|e| bad(format!("not UTF-8 text: {e}")));
        }
        Utf8::extract(obj).map(|text| Utf8OrBytes(text.0))
    }
}

/// A key to look up: one that is not valid Unicode can never be stored, so it is absent.
pub(super) fn lookup_key<'a>(key: &'a Bound<'_, PyString>) -> Option<&'a str> {
    key.to_str().ok()
}

pub(super) fn parse_ts(text: &str) -> PyResult<Timestamp> {
    Timestamp::parse(text).map_err(to_py_err)
}

/// A wire-form entry given as a Python mapping (`key`, `ts`, `value` or `deleted: True`,
/// and `seq` when `with_seq`).
pub(super) fn entry_from_py(obj: &Bound<'_, PyAny>, limits: &Limits) -> PyResult<Entry<'static>> {
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
pub(super) fn entries_from_py<T>(
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
