#!/usr/bin/env python3
"""Size limits of the crate's source (python3, standard library only).

Small files and short functions keep every room of the code readable: this fails when a file in
`src/` is longer than MAX_FILE_LINES or a function outside a `#[cfg(test)]` module is longer
than MAX_FN_LINES. Tests live in their own files (`mod tests;`), so they do not count.

Usage: scripts/check-sizes.py [SRC_DIR]        (default: the `src/` beside this script)
"""

import os
import re
import sys

MAX_FILE_LINES = 800
MAX_FN_LINES = 120

# Functions allowed over the limit, each with the reason. Keep this list short.
EXCEPTIONS = {
    # One flat registration table of every metric (name, help, labels, buckets): splitting it
    # would scatter the catalogue the README and dashboards are checked against.
    ("metrics.rs", "new"): "the metric catalogue",
}

FN_START = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")


def strip_line(line):
    """The code of a line without its `//` comment or string contents (good enough for braces)."""
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])'", "''", line)
    i = line.find("//")
    return line if i < 0 else line[:i]


def functions(lines):
    """(name, first line, length) of every function outside test modules."""
    out = []
    depth = 0
    test_depth = None  # brace depth at which a #[cfg(test)] module opened
    pending_test = False
    stack = []  # (name, start, depth at open)
    for no, raw in enumerate(lines, 1):
        code = strip_line(raw)
        if "#[cfg(test)]" in code:
            pending_test = True
        m = FN_START.match(code)
        opening = None
        if test_depth is None:
            if pending_test and re.match(r"^\s*(pub\s+)?mod\s+\w+\s*\{", code):
                test_depth = depth
                pending_test = False
            elif m:
                opening = m.group(6)
        if code.strip() and not code.strip().startswith("#["):
            if not re.match(r"^\s*(pub\s+)?mod\s+\w+\s*;", code):
                pending_test = pending_test and "#[cfg(test)]" in code
        for ch in code:
            if ch == "{":
                if opening is not None:
                    stack.append((opening, no, depth))
                    opening = None
                depth += 1
            elif ch == "}":
                depth -= 1
                if stack and stack[-1][2] == depth:
                    name, start, _ = stack.pop()
                    out.append((name, start, no - start + 1))
                if test_depth is not None and depth == test_depth:
                    test_depth = None
        if opening is not None and code.rstrip().endswith(";"):
            opening = None  # a declaration without a body (trait method)
    return out


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
    problems = []
    for root, _, files in os.walk(src):
        for f in sorted(files):
            if not f.endswith(".rs"):
                continue
            if f == "tests.rs" or f.endswith("_tests.rs"):
                continue  # a module's tests, in their own file
            path = os.path.normpath(os.path.join(root, f))
            lines = open(path, encoding="utf-8").read().split("\n")
            if len(lines) > MAX_FILE_LINES:
                problems.append(f"{path}: {len(lines)} lines (max {MAX_FILE_LINES})")
            for name, start, length in functions(lines):
                if length > MAX_FN_LINES and (f, name) not in EXCEPTIONS:
                    problems.append(f"{path}:{start}: fn {name} is {length} lines (max {MAX_FN_LINES})")
    for p in problems:
        print("ERROR " + p)
    print(f"check-sizes: {len(problems)} problem(s)" if problems else "check-sizes: within limits")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
