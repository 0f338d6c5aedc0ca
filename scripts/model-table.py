#!/usr/bin/env python3
"""Prints the Markdown table of out-of-time ROC AUC per model artifact and evaluation point.

Reads what `churnguard train` recorded in each artifact (`training.metrics.evaluations`: the
validation point first, then every `--validate-at` evaluation), so the table is exactly what the
committed models measured. Standard library only.

Usage: scripts/model-table.py [MODEL.json ...]   (default: models/cdnow-*.json)
Regenerate the CDNOW figures first with scripts/train-cdnow-models.sh.
"""

import glob
import json
import os
import sys


def main(paths):
    if not paths:
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
        paths = sorted(glob.glob(os.path.join(root, "models", "cdnow-*.json")))
    rows, columns = [], []
    for path in paths:
        with open(path) as f:
            artifact = json.load(f)
        evals = artifact.get("training", {}).get("metrics", {}).get("evaluations") or []
        cells = {}
        for e in evals:
            key = "%s (%g w)" % (e["cutoff"][:10], e["horizon_days"] / 7)
            if key not in columns:
                columns.append(key)
            cells[key] = e.get("roc_auc")
        name = os.path.basename(path)[: -len(".json")]
        rows.append((name, artifact["kind"], cells))
    print("| model | kind | " + " | ".join(columns) + " |")
    print("| --- | --- |" + " --- |" * len(columns))
    for name, kind, cells in rows:
        best = [
            max((r[2].get(c) or 0.0) for r in rows) == (cells.get(c) or -1.0) for c in columns
        ]
        shown = [
            ("**%.4f**" if b else "%.4f") % cells[c] if cells.get(c) is not None else "–"
            for c, b in zip(columns, best)
        ]
        print("| `%s` | %s | %s |" % (name, kind, " | ".join(shown)))


if __name__ == "__main__":
    main(sys.argv[1:])
