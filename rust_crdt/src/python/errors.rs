//! Core errors as Python's `syncd.errors.CrdtError`: the one exception the binding raises
//! for invalid input, carrying the protocol's error code.

use pyo3::prelude::*;

use crate::error::CrdtError;
use crate::persist::LoadError;

mod exceptions {
    pyo3::import_exception!(syncd.errors, CrdtError);
}
pub(super) use exceptions::CrdtError as PyCrdtError;

/// A core error as a `CrdtError(message, code, entry, id)`.
pub(super) fn to_py_err(error: CrdtError) -> PyErr {
    PyCrdtError::new_err((error.message, error.code.as_str(), error.entry, error.id))
}

/// A `bad_message` `CrdtError`.
pub(super) fn bad(message: impl Into<String>) -> PyErr {
    to_py_err(CrdtError::bad_message(message))
}

/// A stored document that could not be read: `OSError` if the file could not be, else
/// the `CrdtError` of its content.
pub(super) fn load_err(error: LoadError) -> PyErr {
    match error {
        LoadError::Io(error) => error.into(),
        LoadError::Bad(error) => to_py_err(error),
    }
}
