//! A tracked user's id as the engine keeps it: short ids inside the slot, longer ones on the
//! heap.
//!
//! Every event looks its user up by id, and the comparison that confirms a hash match reads the
//! stored id. Kept inline, that read is in the slot the event updates next anyway; kept on the
//! heap, it is one more cache miss per event (and one more allocation per user). Typical ids
//! (`user-00012345`, UUIDs without dashes up to 22 bytes) fit inline.

use std::ops::Deref;

/// Longest id kept inline, in bytes.
const INLINE: usize = 22;

/// A user id: inline up to [`INLINE`] bytes, else boxed. Same size as a `&str` plus 8 bytes.
#[derive(Clone)]
pub(super) enum UserId {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

const _: () = assert!(std::mem::size_of::<UserId>() == 24);

impl UserId {
    pub(super) fn new(id: &str) -> UserId {
        if id.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..id.len()].copy_from_slice(id.as_bytes());
            UserId::Inline {
                len: id.len() as u8,
                bytes,
            }
        } else {
            UserId::Heap(id.into())
        }
    }

    /// Whether this is `id` (bytes compared; no UTF-8 check on the hot path).
    pub(super) fn is(&self, id: &str) -> bool {
        match self {
            UserId::Inline { len, bytes } => &bytes[..usize::from(*len)] == id.as_bytes(),
            UserId::Heap(b) => &**b == id,
        }
    }

    /// Heap bytes held (memory accounting).
    pub(super) fn heap_bytes(&self) -> usize {
        match self {
            UserId::Inline { .. } => 0,
            UserId::Heap(b) => b.len(),
        }
    }
}

impl Deref for UserId {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            // The bytes are a whole `&str` copied in `new`, so they are valid UTF-8.
            UserId::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            UserId::Heap(b) => b,
        }
    }
}

impl std::fmt::Debug for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_ids_read_back_and_compare() {
        for id in [
            "",
            "u",
            "user-00012345",
            "exactly-22-bytes-long!",
            "twenty-three-bytes-long",
            "é-ünïcödé-ïds-stay-whole",
        ] {
            let u = UserId::new(id);
            assert_eq!(&*u, id);
            assert!(u.is(id));
            assert!(!u.is("other"));
            assert_eq!(
                u.heap_bytes(),
                if id.len() <= INLINE { 0 } else { id.len() }
            );
        }
        assert!(!UserId::new("user-1").is("user-10"));
    }
}
