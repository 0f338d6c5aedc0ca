#!/usr/bin/env python3
"""Import graph and layer check of the crate's modules (python3, standard library only).

Prints which module imports which (from `use` trees and from `crate::`, `super::`, `self::` and
`churnguard::` paths in code; comments, strings and `#[cfg(test)]` modules are ignored), then
exits non-zero when

* two modules import each other, directly or round a loop: cycles are looked for among the
  top-level modules of `src/` and among the children of every folder module (so a cycle
  between `model/train.rs` and `model/evaluate.rs` is caught as well as one between `engine`
  and `model`);
* a module imports one of an outer layer (see LAYERS and MODULES below);
* a module has no layer, or a crate of EXTERNAL_CRATES is used outside its layers.

Usage: scripts/check-layers.py [SRC_DIR]        (default: the `src/` beside this script)

The tables below are the architecture; edit them when a module moves. Module paths are Rust
paths without `crate::` (`model::train`); the longest declared prefix of a module's path gives
its layer, so a folder can be declared once and single files inside it overridden.
"""

# --- The architecture -------------------------------------------------------------------------

# Layer -> rank. A module may import modules of its own rank or a lower one, never a higher one:
# the core knows nothing of Kafka, files, training or flags; the command line sits outside all.
LAYERS = {
    "core": 0,
    "adapters": 1,
    "training": 1,
    "tools": 1,
    "cli": 2,
}

# Module path -> layer (longest prefix wins). `lib` is the library's root (lib.rs: shared
# types such as Millis); `main` is the binary's root (main.rs), whose modules (e.g. `cli`)
# are listed like the library's.
MODULES = {
    "lib": "core",
    "alert": "core",
    "clock": "core",
    "dedupe": "core",
    "engine": "core",
    "event": "core",
    "features": "core",
    "mapping": "core",
    "mapping::avro": "core",
    "model": "core",
    "model::boost": "training",
    "model::card": "training",
    "model::evaluate": "training",
    "model::dataset": "training",
    "model::fit": "training",
    "model::inputs": "training",
    "model::train_config": "training",
    "model::plots": "training",
    "model::reload": "adapters",
    "model::train": "training",
    "policy": "core",
    "scoring": "core",
    "spans": "core",
    "time": "core",
    "http": "adapters",
    "api": "adapters",
    "kafka": "adapters",
    "kafka::backfill": "adapters",
    "kafka::partitioner": "adapters",
    "kafka::broker_view": "adapters",
    "kafka::continuity": "adapters",
    "kafka::idle": "adapters",
    "metrics": "adapters",
    "replay": "adapters",
    "demo": "tools",
    "history": "tools",
    "score_table": "tools",
    "loadgen": "tools",
    "synth": "tools",
    "main": "cli",
    "cli": "cli",
}

# External crate -> the layers that may use it (the library must not need a flag parser).
EXTERNAL_CRATES = {
    "clap": {"cli"},
}

# The library's name as the binary's code spells it (`churnguard::engine::Engine`).
LIB_NAME = "churnguard"

# --- Implementation ---------------------------------------------------------------------------

import os
import re
import sys
from collections import defaultdict

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def strip_code(text):
    """The source with comments, string and char literals blanked (newlines kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    out.append("\n" if text[i] == "\n" else "")
                    i += 1
        elif re.match(r'(b|c)?r(#*)"', text[i:i + 100]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'(b|c)?r(#*)"', text[i:])
            end = '"' + m.group(2)
            j = text.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append("\n" * text.count("\n", i, j) + '""')
            i = j
        elif c == '"' or (c in "bc" and text.startswith('"', i + 1) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_"))):
            j = i + (1 if c == '"' else 2)
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append("\n" * text.count("\n", i, j) + '""')
            i = j + 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{1F600}') or a lifetime ('a): only the former closes.
            m = re.match(r"'(\\(u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)|[^\\'])'", text[i:i + 12])
            if m:
                out.append("' '")
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_test_modules(code):
    """The code without `#[cfg(test)]` items (tests may use anything: they are not shipped)."""
    while True:
        m = re.search(r"#\[cfg\(test\)\]\s*(#\[[^\]]*\]\s*)*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*[;{]", code)
        if not m:
            return code
        if code[m.end() - 1] == ";":
            code = code[:m.start()] + "\n" * code.count("\n", m.start(), m.end()) + code[m.end():]
            continue
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        code = code[:m.start()] + "\n" * code.count("\n", m.start(), j) + code[j:]


def expand_use_tree(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e] (aliases and globs dropped)."""
    tree = re.sub(r"\s+", "", re.sub(r"\s+as\s+\w+", "", tree))
    top = tree.find("{")
    if top < 0:
        return [tree[:-3] if tree.endswith("::*") else tree]
    prefix, depth, parts, start = tree[:top], 0, [], top + 1
    for k in range(top, len(tree)):
        ch = tree[k]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                parts.append(tree[start:k])
                break
        elif ch == "," and depth == 1:
            parts.append(tree[start:k])
            start = k + 1
    paths = []
    for part in parts:
        if part in ("", "self"):
            paths.append(prefix.rstrip(":"))
        elif part != "*":
            paths += [prefix + p for p in expand_use_tree(part)]
    return paths


class Crate:
    """One crate (the library or the binary): its files and their module paths."""

    def __init__(self, root_file, root_name):
        self.root_name = root_name
        self.files = {}  # module path inside the crate (tuple, () = root) -> file
        self.collect(root_file, ())
        self.top = {m[0] for m in self.files if m}

    def node(self, path):
        """The graph's name for a path inside this crate: module paths as written, items of
        the crate root under the root's name (`crate::Millis` -> ('lib', 'Millis'))."""
        if path and path[0] in self.top:
            return path
        return (self.root_name,) + path

    def collect(self, path, module):
        self.files[module] = path
        code = drop_test_modules(strip_code(open(path, encoding="utf-8").read()))
        folder = os.path.dirname(path) if (module == () or os.path.basename(path) == "mod.rs") \
            else os.path.splitext(path)[0]
        for m in re.finditer(r"(?m)^\s*(#\[path[^\]]*\]\s*)?(pub(\([^)]*\))?\s+)?mod\s+(\w+)\s*;", code):
            name = m.group(4)
            if m.group(1):
                sys.exit(f"{path}: #[path] on mod {name}: not supported, name the file after the module")
            for candidate in (os.path.join(folder, name + ".rs"), os.path.join(folder, name, "mod.rs")):
                if os.path.exists(candidate):
                    self.collect(candidate, module + (name,))
                    break
            else:
                sys.exit(f"{path}: mod {name}; has no file")


def references(code, module, crate, lib):
    """Module paths referenced from `code` (in `crate`'s `module`), as `node` paths; external
    crates of EXTERNAL_CRATES as ('extern', name)."""
    children = {m.group(3) for m in re.finditer(r"(?m)^\s*(pub(\([^)]*\))?\s+)?mod\s+(\w+)", code)}
    raw = []
    for m in re.finditer(r"\buse\s+([^;]+);", code):
        raw += [(p, True) for p in expand_use_tree(m.group(1))]
    for m in re.finditer(r"(?<![\w:])((?:crate|super|self|%s|%s)(?:::\w+)+)"
                         % (LIB_NAME, "|".join(EXTERNAL_CRATES)), code):
        raw.append((m.group(1), False))
    if children:
        for m in re.finditer(r"(?<![\w:])((?:%s)(?:::\w+)+)" % "|".join(sorted(children)), code):
            raw.append((m.group(1), True))
    out = []
    for path, relative_ok in raw:
        segs = [s for s in path.split("::") if s]
        if not segs:
            continue
        if segs[0] == "crate":
            out.append(crate.node(tuple(segs[1:])))
        elif segs[0] == LIB_NAME and lib is not None and lib is not crate:
            out.append(lib.node(tuple(segs[1:])))
        elif segs[0] in ("super", "self"):
            base = list(module)
            while segs and segs[0] in ("super", "self"):
                if segs.pop(0) == "super" and base:
                    base.pop()
            out.append(crate.node(tuple(base) + tuple(segs)))
        elif relative_ok and segs[0] in children:
            out.append(crate.node(tuple(module) + tuple(segs)))
        elif segs[0] in EXTERNAL_CRATES:
            out.append(("extern", segs[0]))
    return out


def layer_of(path):
    """(declared prefix, layer) for a module path such as ('model', 'train', 'Row')."""
    key = "::".join(path)
    best = None
    for prefix in MODULES:
        if key == prefix or key.startswith(prefix + "::"):
            if best is None or len(prefix) > len(best):
                best = prefix
    return best, (MODULES[best] if best else None)


def cycles(nodes, edges):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return found


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    src = os.path.normpath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "src"))
    lib = Crate(os.path.join(src, "lib.rs"), "lib") if os.path.exists(os.path.join(src, "lib.rs")) else None
    crates = [lib] if lib else []
    if os.path.exists(os.path.join(src, "main.rs")):
        crates.append(Crate(os.path.join(src, "main.rs"), "main"))

    # Every module's graph name; a path such as ('engine', 'Engine') names an item instead.
    modules = {c.node(m) for c in crates for m in c.files if m} | {("main",)}
    problems = []
    # parent path -> {child: {child: [file, ...]}}: the import graph among the children of each
    # module (the top-level modules are the children of ()).
    graphs = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for crate in crates:
        for module, path in sorted(crate.files.items()):
            rel = os.path.relpath(path, os.path.dirname(src))
            me = crate.node(module)
            name = "::".join(me)
            _, my_layer = layer_of(me)
            if my_layer is None:
                problems.append(f"{rel}: module `{name}` has no layer in MODULES")
            if module == () and crate is lib:
                continue  # lib.rs declares and re-exports modules: that is not a dependency
            code = drop_test_modules(strip_code(open(path, encoding="utf-8").read()))
            for target in dict.fromkeys(references(code, module, crate, lib)):
                if target[0] == "extern":
                    allowed = EXTERNAL_CRATES[target[1]]
                    if my_layer and my_layer not in allowed:
                        problems.append(f"{rel}: `{name}` ({my_layer}) uses crate {target[1]}, "
                                        f"allowed only in {', '.join(sorted(allowed))}")
                    continue
                _, their_layer = layer_of(target)
                if their_layer is None:
                    problems.append(f"{rel}: `{name}` imports `{'::'.join(target)}`, which has no layer")
                elif my_layer and LAYERS[their_layer] > LAYERS[my_layer]:
                    problems.append(f"{rel}: `{name}` ({my_layer}) imports `{'::'.join(target)}` "
                                    f"({their_layer}), an outer layer")
                # The edge between the two children of the deepest common ancestor; a module
                # using its own parent or child is not an edge between peers.
                k = 0
                while k < min(len(me), len(target)) and me[k] == target[k]:
                    k += 1
                if k < len(me) and k < len(target) and target[:k + 1] in modules:
                    graphs[me[:k]][me[k]][target[k]].append(rel)

    for parent in sorted(graphs):
        title = "::".join(parent) if parent else "top-level modules"
        graph = graphs[parent]
        print(f"== {title}")
        for a in sorted({m[len(parent)] for m in modules if m[:len(parent)] == parent and len(m) > len(parent)}):
            print(f"  {a} -> {', '.join(sorted(graph[a])) or '(nothing)'}")
        nodes = set(graph) | {b for a in graph for b in graph[a]}
        for comp in cycles(nodes, graph):
            edges = [f"{a} -> {b} in {', '.join(sorted(set(graph[a][b])))}"
                     for a in comp for b in sorted(graph[a]) if b in comp]
            problems.append(f"cycle among {title}: {' <-> '.join(comp)} ({'; '.join(edges)})")
    problems = list(dict.fromkeys(problems))
    for p in problems:
        print(f"ERROR {p}", file=sys.stderr)
    if problems:
        print(f"check-layers: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("check-layers: no cycles, no layer violations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
