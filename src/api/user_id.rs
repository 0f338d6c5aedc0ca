//! What a user id in a request may be, checked before any lookup: ids come from the network,
//! and a lookup with a megabyte id or control characters must cost nothing and log nothing odd.

/// Why a user id in a path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserIdError {
    #[error("user_id is empty")]
    Empty,
    #[error("user_id is {len} bytes; at most {max} are accepted (--max-id-bytes)")]
    TooLong { len: usize, max: usize },
    #[error("user_id contains {what} at byte {at}; ids are printable text without whitespace")]
    Character { what: &'static str, at: usize },
}

/// Checks a (percent-decoded) user id: 1..=`max_bytes` bytes of printable characters, no
/// whitespace. The engine refuses longer ids at ingest, so a longer one can never be found.
pub fn check(user_id: &str, max_bytes: usize) -> Result<(), UserIdError> {
    if user_id.is_empty() {
        return Err(UserIdError::Empty);
    }
    if user_id.len() > max_bytes {
        return Err(UserIdError::TooLong {
            len: user_id.len(),
            max: max_bytes,
        });
    }
    for (at, c) in user_id.char_indices() {
        let what = if c.is_control() {
            "a control character"
        } else if c.is_whitespace() {
            "whitespace"
        } else {
            continue;
        };
        return Err(UserIdError::Character { what, at });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ordinary_ids_pass_and_odd_ones_are_named() {
        for ok in ["u1", "user-42", "a.b@shop.example", "客户-7", "x:y/z"] {
            assert_eq!(check(ok, 64), Ok(()), "{ok}");
        }
        assert_eq!(check("", 64), Err(UserIdError::Empty));
        assert_eq!(
            check("ab\ncd", 64),
            Err(UserIdError::Character {
                what: "a control character",
                at: 2
            })
        );
        assert!(matches!(
            check("a b", 64),
            Err(UserIdError::Character { at: 1, .. })
        ));
        assert_eq!(
            check(&"x".repeat(65), 64),
            Err(UserIdError::TooLong { len: 65, max: 64 })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Any string: an answer, never a panic; an accepted id has no control character or
        /// whitespace and fits the bound.
        #[test]
        fn any_string_is_checked_without_panic(s in ".{0,80}", max in 1usize..70) {
            if check(&s, max).is_ok() {
                prop_assert!(!s.is_empty() && s.len() <= max);
                prop_assert!(!s.chars().any(|c| c.is_control() || c.is_whitespace()));
            }
        }
    }
}
