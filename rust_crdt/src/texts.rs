//! The keys and values of a document's entries, packed one after another in one buffer.
//!
//! A million small entries each in an allocation of its own would pay the allocator's
//! header and rounding on every one (a 26-byte key and value takes a 48-byte chunk);
//! here they cost their bytes. A write that fits where its key's previous value was
//! is written over it; one that does not is appended, and the bytes it leaves behind
//! are counted: when they pass half of the live bytes, [`Texts::compact`] closes the gaps
//! in place.

use crate::growth;

/// Where one entry's text is: its key followed by its value's canonical JSON text
/// (nothing for a tombstone). Packed to 12 bytes, so that a slot holding one is 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, packed(4))]
pub(crate) struct Span {
    /// The offset in the buffer, shifted left by 16 bits, and the key's length in the
    /// low 16 bits (keys are at most [`crate::entry::MAX_KEY_BYTES`]).
    at: u64,
    /// The key's and the value's bytes together.
    len: u32,
}

impl Span {
    fn new(offset: usize, key_len: usize, len: usize) -> Self {
        Span {
            at: ((offset as u64) << 16) | key_len as u64,
            // An entry's text is at most MAX_KEY_BYTES plus a value the frame limit bounds.
            len: u32::try_from(len).unwrap_or(u32::MAX),
        }
    }

    fn offset(self) -> usize {
        (self.at >> 16) as usize
    }

    fn key_len(self) -> usize {
        (self.at & 0xffff) as usize
    }

    fn end(self) -> usize {
        self.offset() + self.len as usize
    }

    /// Whether the entry is a tombstone: a live value's JSON text is never empty.
    pub(crate) fn is_tombstone(self) -> bool {
        self.len as usize == self.key_len()
    }
}

/// The buffer of every entry's key and value.
#[derive(Default)]
pub(crate) struct Texts {
    bytes: Vec<u8>,
    /// Bytes of the buffer no span covers any more.
    garbage: usize,
}

impl Texts {
    /// The key of the entry at `span`.
    pub(crate) fn key(&self, span: Span) -> &str {
        let start = span.offset();
        text(&self.bytes[start..start + span.key_len()])
    }

    /// The key's bytes (for comparing: no need to check them as UTF-8 again).
    pub(crate) fn key_bytes(&self, span: Span) -> &[u8] {
        let start = span.offset();
        &self.bytes[start..start + span.key_len()]
    }

    /// The value's canonical JSON text, or `None` for a tombstone.
    pub(crate) fn value(&self, span: Span) -> Option<&str> {
        (!span.is_tombstone())
            .then(|| text(&self.bytes[span.offset() + span.key_len()..span.end()]))
    }

    /// The first byte of an entry's text, to bring it into the cache.
    pub(crate) fn first_byte(&self, span: Span) -> u8 {
        self.bytes.get(span.offset()).copied().unwrap_or(0)
    }

    /// Stores a key and value (`None`: a tombstone). `old` is where the same key's text
    /// was: the value is written over the old one when it fits.
    pub(crate) fn store(&mut self, old: Option<Span>, key: &str, value: Option<&str>) -> Span {
        let value = value.unwrap_or("").as_bytes();
        let len = key.len() + value.len();
        if let Some(old) = old {
            if len <= old.len as usize {
                let start = old.offset() + key.len();
                self.bytes[start..start + value.len()].copy_from_slice(value);
                self.garbage += old.len as usize - len;
                return Span::new(old.offset(), key.len(), len);
            }
            self.garbage += old.len as usize;
        }
        let offset = self.bytes.len();
        growth::reserve(&mut self.bytes, len);
        self.bytes.extend_from_slice(key.as_bytes());
        self.bytes.extend_from_slice(value);
        Span::new(offset, key.len(), len)
    }

    /// Forgets an entry's text (its slot is gone).
    pub(crate) fn release(&mut self, span: Span) {
        self.garbage += span.len as usize;
    }

    /// Whether the gaps are worth closing: over half the live bytes (and 64 KiB).
    pub(crate) fn compact_due(&self) -> bool {
        let live = self.bytes.len() - self.garbage;
        self.garbage > live / 2 + (64 << 10)
    }

    /// Closes the gaps in place. `spans` must be every live span; each is moved and
    /// updated.
    pub(crate) fn compact<'s>(&mut self, spans: impl Iterator<Item = &'s mut Span>) {
        let mut spans: Vec<&mut Span> = spans.collect();
        spans.sort_unstable_by_key(|span| span.offset());
        let mut cursor = 0;
        for span in spans {
            // In offset order every span moves down (or stays): no text is overwritten
            // before it has moved.
            self.bytes.copy_within(span.offset()..span.end(), cursor);
            *span = Span::new(cursor, span.key_len(), span.len as usize);
            cursor += span.len as usize;
        }
        self.bytes.truncate(cursor);
        self.bytes.shrink_to(cursor + cursor / 8);
        self.garbage = 0;
    }

    /// Bytes held, gaps and spare capacity included.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
}

/// Text the buffer holds: whole UTF-8 strings were copied in, at these very bounds.
fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("a span covers whole UTF-8 strings")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_over_the_old_value_when_it_fits() {
        let mut texts = Texts::default();
        let a = texts.store(None, "a", Some("\"long value\""));
        let b = texts.store(None, "bé", Some("2"));
        let a2 = texts.store(Some(a), "a", Some("1"));
        assert_eq!(a2.offset(), a.offset());
        assert_eq!((texts.key(a2), texts.value(a2)), ("a", Some("1")));
        assert_eq!((texts.key(b), texts.value(b)), ("bé", Some("2")));
        let gone = texts.store(Some(b), "bé", None);
        assert!(gone.is_tombstone());
        assert_eq!(texts.value(gone), None);
        let a3 = texts.store(Some(a2), "a", Some("\"longer than before\""));
        assert_ne!(a3.offset(), a.offset());
        assert_eq!(texts.value(a3), Some("\"longer than before\""));
    }

    #[test]
    fn compacting_keeps_every_text_and_drops_the_gaps() {
        let mut texts = Texts::default();
        let mut spans: Vec<Span> = (0..10_000)
            .map(|i| texts.store(None, &format!("k{i}"), Some(&i.to_string())))
            .collect();
        for width in [10, 20, 30] {
            for (i, span) in spans.iter_mut().enumerate() {
                let value = format!("\"{i:0>width$}\"");
                *span = texts.store(Some(*span), &format!("k{i}"), Some(&value));
            }
        }
        assert!(texts.compact_due());
        texts.compact(spans.iter_mut());
        for (i, span) in spans.iter().enumerate() {
            assert_eq!(texts.key(*span), format!("k{i}"));
            assert_eq!(texts.value(*span), Some(format!("\"{i:0>30}\"").as_str()));
        }
        assert!(!texts.compact_due());
        let live: usize = spans.iter().map(|s| s.len as usize).sum();
        assert!(texts.capacity() <= live + live / 8);
    }
}
