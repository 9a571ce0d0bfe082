//! Helpers shared by the integration tests.

use syncd_crdt::Document;

/// A document's full state: every entry, tombstones included, as (key, ts, value text),
/// sorted, so that two replicas compare equal exactly when they hold the same entries.
pub type State = Vec<(String, String, Option<String>)>;

/// The full state of `doc`.
pub fn state(doc: &Document) -> State {
    let mut all: State = doc
        .entries()
        .map(|e| {
            (
                e.key.to_owned(),
                e.ts().to_string(),
                e.value.map(str::to_owned),
            )
        })
        .collect();
    all.sort();
    all
}
