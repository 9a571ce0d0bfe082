//! Locking the core's state that a Python object shares between threads.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex; a poisoned lock is still usable because the core never leaves a
/// document half-updated across a panic point that Python could observe.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
