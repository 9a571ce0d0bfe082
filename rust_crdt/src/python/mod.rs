//! The Python binding, `syncd._crdt`: thin wrappers that convert between Python objects
//! and the core's types, release the GIL around long work, and raise
//! `syncd.errors.CrdtError` for every core error.
//!
//! One job per file: `convert` turns Python values into the core's types and back,
//! `errors` raises core errors as `CrdtError`, `document` is the `Document` class and
//! `results` the objects it hands back, `clock` is the `Clock` class, `functions` holds
//! the module-level functions, and `lock` the lock that `document` and `clock` share.
//! This file only registers them with the module.

use pyo3::prelude::*;

use crate::entry::{DEFAULT_MAX_OPS, DEFAULT_MAX_VALUE_BYTES, MAX_KEY_BYTES};
use crate::frame::{DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_SKEW_MS, MAX_ID};

mod clock;
mod convert;
mod document;
mod errors;
mod functions;
mod lock;
mod results;

#[pymodule]
fn _crdt(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<document::PyDocument>()?;
    m.add_class::<results::PyEntry>()?;
    m.add_class::<results::PyMergeResult>()?;
    m.add_class::<results::PyFrameResult>()?;
    m.add_class::<clock::PyClock>()?;
    m.add_function(wrap_pyfunction!(functions::py_frame_type, m)?)?;
    m.add_function(wrap_pyfunction!(functions::py_broadcast_frame, m)?)?;
    m.add_function(wrap_pyfunction!(functions::parse_timestamp, m)?)?;
    m.add_function(wrap_pyfunction!(functions::format_timestamp, m)?)?;
    m.add_function(wrap_pyfunction!(functions::py_validate_node, m)?)?;
    m.add_function(wrap_pyfunction!(functions::py_check_key, m)?)?;
    m.add_function(wrap_pyfunction!(functions::py_check_value, m)?)?;
    m.add_function(wrap_pyfunction!(functions::canonical_json, m)?)?;
    m.add_function(wrap_pyfunction!(functions::canonicalize_json, m)?)?;
    m.add_function(wrap_pyfunction!(functions::py_wall_clock_ms, m)?)?;
    m.add("MAX_KEY_BYTES", MAX_KEY_BYTES)?;
    m.add("MAX_ID", MAX_ID)?;
    m.add("DEFAULT_MAX_VALUE_BYTES", DEFAULT_MAX_VALUE_BYTES)?;
    m.add("DEFAULT_MAX_OPS", DEFAULT_MAX_OPS)?;
    m.add("DEFAULT_MAX_SKEW_MS", DEFAULT_MAX_SKEW_MS)?;
    m.add("DEFAULT_MAX_FRAME_BYTES", DEFAULT_MAX_FRAME_BYTES)?;
    Ok(())
}
