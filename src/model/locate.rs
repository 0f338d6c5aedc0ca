//! Finding the model file the user meant.
//!
//! `--model` defaults to `models/churn-lr.json`, a path relative to the churnguard repository.
//! Run from another directory, a relative path that does not exist there is also looked for
//! relative to the installed binary (its directory and up to three parents, which covers
//! `target/release/` inside the repository and `bin/` beside a `models/` directory) and in the
//! repository this binary was built from. The first existing candidate wins; when none exists
//! the error names every path tried and what to do.

use std::path::{Path, PathBuf};

use super::artifact::ModelError;

/// The existing file `requested` names, or [`ModelError::NotFound`] listing what was tried.
pub fn resolve_model_path(requested: &Path) -> Result<PathBuf, ModelError> {
    let tried = candidates(requested);
    if let Some(found) = tried.iter().find(|p| p.is_file()) {
        if found != requested {
            tracing::info!(
                requested = %requested.display(),
                found = %found.display(),
                "model file not in the working directory; using the one found beside the binary"
            );
        }
        return Ok(found.clone());
    }
    let listed: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
    Err(ModelError::NotFound {
        requested: requested.display().to_string(),
        tried: listed.join(", "),
    })
}

/// Where `requested` may be, in order: as given (absolute, or under the working directory),
/// then for relative paths under the binary's directory and its parents, then under the
/// repository the binary was built from.
fn candidates(requested: &Path) -> Vec<PathBuf> {
    let as_given = std::env::current_dir()
        .map(|cwd| cwd.join(requested))
        .unwrap_or_else(|_| requested.to_path_buf());
    let mut out = vec![as_given];
    if requested.is_absolute() {
        return out;
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        out.extend(dir.ancestors().take(4).map(|d| d.join(requested)));
    }
    out.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(requested));
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_shipped_model_and_names_every_path_tried() {
        let found = resolve_model_path(Path::new("models/churn-lr.json")).unwrap();
        assert!(found.is_file(), "{}", found.display());
        let err = resolve_model_path(Path::new("no/such/model.json"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no/such/model.json") && err.contains("--model"),
            "{err}"
        );
    }
}
