//! Bearer tokens for the lookup API, read from a file so a Kubernetes Secret or a vault agent
//! can rotate them without a restart: several tokens may be valid at once (the old and the new
//! during a rotation), and the file is re-read when it changes.
//!
//! File format: one token per line, optionally preceded by an id and whitespace
//! (`crm-2026q4 3f9a…`); blank lines and `#` comments are skipped. The id is what logs and
//! metrics name (never the token); a line without one is named `line-N`. Tokens are compared
//! through their SHA-256 digests in constant time, so neither a token's length nor how much
//! of it a guess matched shows in the response time.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};

/// Shortest token accepted: guessing one must be hopeless.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Which token a request used (its id from the token file, never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenId(pub String);

/// Why a token file is refused.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read API token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("API token file {path}, line {line}: {reason}")]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("API token file {path} holds no token: every request would be refused")]
    Empty { path: PathBuf },
}

struct Entry {
    id: String,
    digest: [u8; 32],
}

/// The valid tokens.
pub struct Tokens {
    path: PathBuf,
    entries: RwLock<(Vec<Entry>, Option<SystemTime>)>,
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Equal digests, looking at every byte whatever the first difference.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn parse(path: &Path, text: &str) -> Result<Vec<Entry>, TokensError> {
    let mut entries = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let refuse = |reason: String| TokensError::Line {
            path: path.to_path_buf(),
            line: n + 1,
            reason,
        };
        let mut words = line.split_whitespace();
        let (id, token) = match (words.next(), words.next(), words.next()) {
            (Some(token), None, _) => (format!("line-{}", n + 1), token),
            (Some(id), Some(token), None) => (id.to_string(), token),
            _ => {
                return Err(refuse(
                    "expected `TOKEN` or `ID TOKEN` (two words at most)".into(),
                ))
            }
        };
        if token.chars().count() < MIN_TOKEN_CHARS {
            return Err(refuse(format!(
                "the token of `{id}` is {} characters; at least {MIN_TOKEN_CHARS} are required",
                token.chars().count()
            )));
        }
        if entries.iter().any(|e: &Entry| e.id == id) {
            return Err(refuse(format!("the id `{id}` is used twice")));
        }
        entries.push(Entry {
            id,
            digest: digest(token.as_bytes()),
        });
    }
    if entries.is_empty() {
        return Err(TokensError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(entries)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Tokens {
    /// Reads the token file; refuses a file with no token or a malformed line.
    pub fn load(path: impl AsRef<Path>) -> Result<Tokens, TokensError> {
        let path = path.as_ref().to_path_buf();
        let stamp = modified(&path);
        let text = std::fs::read_to_string(&path).map_err(|source| TokensError::Read {
            path: path.clone(),
            source,
        })?;
        let entries = parse(&path, &text)?;
        Ok(Tokens {
            path,
            entries: RwLock::new((entries, stamp)),
        })
    }

    /// The token id of a request's `Authorization: Bearer …` header, if it carries a valid one.
    pub fn check(&self, headers: &HeaderMap) -> Option<TokenId> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let candidate = digest(token.trim().as_bytes());
        let guard = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let mut found = None;
        for e in &guard.0 {
            if same_digest(&candidate, &e.digest) && found.is_none() {
                found = Some(TokenId(e.id.clone()));
            }
        }
        found
    }

    /// The ids of the valid tokens.
    pub fn ids(&self) -> Vec<String> {
        let guard = self.entries.read().unwrap_or_else(|p| p.into_inner());
        guard.0.iter().map(|e| e.id.clone()).collect()
    }

    /// Re-reads the file if it changed. A file that became invalid is reported and the tokens
    /// read before stay valid: a half-written Secret must not lock every client out.
    pub fn reload_if_changed(&self) -> bool {
        let stamp = modified(&self.path);
        {
            let guard = self.entries.read().unwrap_or_else(|p| p.into_inner());
            if stamp == guard.1 {
                return false;
            }
        }
        let parsed = std::fs::read_to_string(&self.path)
            .map_err(|source| TokensError::Read {
                path: self.path.clone(),
                source,
            })
            .and_then(|text| parse(&self.path, &text));
        match parsed {
            Ok(entries) => {
                let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
                tracing::info!(path = %self.path.display(), tokens = ?ids, "API tokens reloaded");
                let mut guard = self.entries.write().unwrap_or_else(|p| p.into_inner());
                *guard = (entries, stamp);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "API token file not reloaded; the previous tokens stay valid");
                let mut guard = self.entries.write().unwrap_or_else(|p| p.into_inner());
                guard.1 = stamp;
                false
            }
        }
    }

    /// Re-reads the file whenever it changes, checking every `every`, until the task is aborted.
    pub fn watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let tokens = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                tokens.reload_if_changed();
            }
        })
    }
}

/// A new random token (64 hex characters) for a demo or a first setup.
pub fn generate_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        h
    }

    #[test]
    fn named_and_unnamed_tokens_are_valid_and_others_not() {
        let (_d, path) = file("# rotation\ncrm 0123456789abcdef0123\n\nfedcba9876543210fedc\n");
        let t = Tokens::load(&path).unwrap();
        assert_eq!(
            t.check(&bearer("0123456789abcdef0123")),
            Some(TokenId("crm".into()))
        );
        assert_eq!(
            t.check(&bearer("fedcba9876543210fedc")),
            Some(TokenId("line-4".into()))
        );
        assert_eq!(t.check(&bearer("0123456789abcdef012")), None);
        assert_eq!(t.check(&HeaderMap::new()), None);
        let mut basic = HeaderMap::new();
        basic.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic 0123456789abcdef0123"),
        );
        assert_eq!(t.check(&basic), None);
    }

    #[test]
    fn bad_files_name_the_line() {
        let (_d, path) = file("ok 0123456789abcdef0123\nshort abc\n");
        let e = Tokens::load(&path).err().unwrap().to_string();
        assert!(e.contains("line 2") && e.contains("at least 16"), "{e}");
        let (_d, path) = file("# nothing\n");
        assert!(matches!(
            Tokens::load(&path),
            Err(TokensError::Empty { .. })
        ));
        let (_d, path) = file("a 0123456789abcdef0123\na 0123456789abcdef0124\n");
        assert!(Tokens::load(&path)
            .err()
            .unwrap()
            .to_string()
            .contains("used twice"));
    }

    #[test]
    fn a_rotated_file_is_picked_up_and_a_broken_one_keeps_the_old_tokens() {
        let (_d, path) = file("old 0123456789abcdef0123\n");
        let t = Tokens::load(&path).unwrap();
        std::fs::write(
            &path,
            "old 0123456789abcdef0123\nnew aaaaaaaaaaaaaaaaaaaa\n",
        )
        .unwrap();
        // Make the change visible to coarse mtime clocks.
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(t.reload_if_changed());
        assert_eq!(
            t.check(&bearer("aaaaaaaaaaaaaaaaaaaa")),
            Some(TokenId("new".into()))
        );
        std::fs::write(&path, "broken x\n").unwrap();
        let later = later + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(!t.reload_if_changed());
        assert!(t.check(&bearer("aaaaaaaaaaaaaaaaaaaa")).is_some());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        /// Any file text parses or is refused, never panics; any header value is checked
        /// without panic and only the exact token passes.
        #[test]
        fn any_file_and_header_is_handled(text in "(?s).{0,200}", guess in ".{0,40}") {
            let path = PathBuf::from("tokens");
            let _ = parse(&path, &text);
            let t = Tokens {
                path,
                entries: RwLock::new((parse(Path::new("t"), "k 0123456789abcdef0123").unwrap(), None)),
            };
            if let Ok(v) = HeaderValue::from_str(&format!("Bearer {guess}")) {
                let mut h = HeaderMap::new();
                h.insert(header::AUTHORIZATION, v);
                prop_assert_eq!(t.check(&h).is_some(), guess.trim() == "0123456789abcdef0123");
            }
        }
    }
}
