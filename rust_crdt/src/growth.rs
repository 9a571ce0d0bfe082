//! Growing a document's large vectors by a quarter at a time rather than doubling them.
//!
//! A vector that doubles holds up to twice what it needs, for as long as the document
//! lives: at a million entries that is tens of megabytes unused. Large blocks are moved
//! by the kernel (`mremap`) rather than copied when they grow, so smaller steps cost
//! little, and each step still grows by a fixed share, so pushing stays amortized O(1).

/// Makes room in `vector` for `additional` more items: at least a quarter of its length.
pub(crate) fn reserve(vector: &mut Vec<impl Sized>, additional: usize) {
    if vector.capacity() - vector.len() < additional {
        vector.reserve_exact(additional.max(vector.len() / 4 + 64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_by_a_quarter() {
        let mut vector: Vec<u64> = Vec::new();
        for n in 0..100_000u64 {
            reserve(&mut vector, 1);
            vector.push(n);
        }
        assert!(vector.capacity() <= vector.len() + vector.len() / 4 + 64);
    }
}
