//! The deploy/ tree as tests see it: shared by the static checks (deploy_files) and the live
//! Prometheus run (prometheus_live), so both read the dashboards the same way.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

/// The repository's deploy/ directory.
pub fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Every non-row panel, including those nested in (collapsed) rows.
pub fn leaf_panels<'a>(panels: &'a [Json], out: &mut Vec<&'a Json>) {
    for p in panels {
        if let Some(nested) = p.get("panels").and_then(Json::as_array) {
            leaf_panels(nested, out);
        }
        if p.get("type").and_then(Json::as_str) != Some("row") {
            out.push(p);
        }
    }
}
