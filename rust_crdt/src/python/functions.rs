//! The module-level functions of `syncd._crdt`: timestamps, node names, key and value
//! checks, canonical JSON, frame types and the wall clock.

use std::borrow::Cow;

use pyo3::prelude::*;

use super::convert::{canonical_from_py, parse_ts, Utf8};
use super::errors::to_py_err;
use crate::canonical::canonicalize;
use crate::clock::wall_clock_ms;
use crate::entry::{check_key, check_value_size, DEFAULT_MAX_VALUE_BYTES};
use crate::frame::{broadcast_json, frame_type};
use crate::timestamp::{validate_node, Timestamp};

#[pyfunction(name = "broadcast_frame")]
pub(super) fn py_broadcast_frame(seq: u64, origin: Utf8<'_>, ops_json: Utf8<'_>) -> String {
    broadcast_json(seq, origin.0, ops_json.0)
}

#[pyfunction(name = "frame_type")]
pub(super) fn py_frame_type(text: Utf8<'_>) -> PyResult<String> {
    frame_type(text.0).map_err(to_py_err)
}

#[pyfunction]
pub(super) fn parse_timestamp(ts: Utf8<'_>) -> PyResult<(u64, u32, String)> {
    let ts = parse_ts(ts.0)?;
    Ok((ts.wall(), ts.counter(), ts.node().to_owned()))
}

#[pyfunction]
pub(super) fn format_timestamp(wall: u64, counter: u32, node: Utf8<'_>) -> PyResult<String> {
    Timestamp::new(wall, counter, node.0)
        .map(|t| t.to_string())
        .map_err(to_py_err)
}

#[pyfunction(name = "validate_node")]
pub(super) fn py_validate_node(node: Utf8<'_>) -> PyResult<()> {
    validate_node(node.0).map_err(to_py_err)
}

#[pyfunction(name = "check_key")]
pub(super) fn py_check_key(key: Utf8<'_>) -> PyResult<()> {
    check_key(key.0).map_err(to_py_err)
}

#[pyfunction(name = "check_value")]
#[pyo3(signature = (value, *, max_value_bytes = DEFAULT_MAX_VALUE_BYTES))]
pub(super) fn py_check_value(value: &Bound<'_, PyAny>, max_value_bytes: usize) -> PyResult<String> {
    let text = canonical_from_py(value)?;
    check_value_size(&text, max_value_bytes).map_err(to_py_err)?;
    Ok(text)
}

#[pyfunction]
pub(super) fn canonical_json(value: &Bound<'_, PyAny>) -> PyResult<String> {
    canonical_from_py(value)
}

#[pyfunction]
pub(super) fn canonicalize_json(text: Utf8<'_>) -> PyResult<String> {
    canonicalize(text.0).map(Cow::into_owned).map_err(to_py_err)
}

#[pyfunction(name = "wall_clock_ms")]
pub(super) fn py_wall_clock_ms() -> u64 {
    wall_clock_ms()
}
