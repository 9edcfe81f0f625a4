#!/usr/bin/env python3
"""The layering check: computes which module of src/ imports which, and
reports imports that run from a lower layer to a higher one, and cycles.

An import is a `use crate::...`/`use super::...` item or a `crate::`/`super::`
path in code. Comments (and so intra-doc links), string literals and
`#[cfg(test)]` modules are not imports: tests may reach anywhere. A path
resolves to the deepest module it names, so `crate::Error` (a re-export in
lib.rs) is an import of the crate root, the top of the stack.

Layers, lowest first, are LAYERS below. An import to a higher layer is
reported unless it is in ALLOWED (each one is explained in ARCHITECTURE.md);
a cycle between files is reported unless it is in ALLOWED_CYCLES. A module's
own children may use what it defines (`super::`), which is no cycle.

    python3 ci/layers.py            check; exit 1 on anything not allowed
    python3 ci/layers.py --graph    also print every import edge
"""

import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

# Lowest first. A module belongs to the first layer whose prefix it has.
LAYERS = [
    # Shared by every layer: the crate's Error and Config (plain settings),
    # and a sched_yield that tells whether another thread took the CPU.
    ("error, config", ["error", "config", "cpu_yield"]),
    # A connection's Unix socket, in the event loop only while somebody may
    # wait on it, and the hint of a busy poller that lets it leave.
    ("unix socket", ["unix_socket", "polled_busily"]),
    # Shared memory primitives (a sealed memfd mapped, SCM_RIGHTS) and the
    # payload pool's two halves: plain OS memory, no protocol.
    ("shm", ["shm"]),
    ("connector", ["connector"]),
    ("transport", ["transport"]),
    ("protocol", ["protocol"]),
    ("peer", ["peer"]),
    ("api", ["config", "router", "stream", "client", "server", "registry",
             "service", "handoff", "blocking", "fuzzing", "ring_switch"]),
    ("crate root", ["crate"]),
]

# (from module, to module): imports that run up on purpose; see
# ARCHITECTURE.md, "Imports that run up".
ALLOWED = {
    # The crate's Error wraps the connector string's own error, defined
    # beside its parser in a leaf that imports nothing of the crate.
    ("error", "connector::state_error"),
    # ErrorData (inside Error::HandlerFailed) keeps the body format its
    # value came in and decodes with that format's codec: a leaf.
    ("error", "protocol::format"),
    # A connector stores which body format it asks for; the format is the
    # protocol's (the same leaf).
    ("connector", "protocol::format"),
}

# Sets of files that may import each other: a platform module dispatching
# to its per-OS halves, which use its types (see ARCHITECTURE.md).
ALLOWED_CYCLES = [
    {
        "connector::link",
        "connector::local_unix",
        "connector::local_windows",
        "connector::inherited",
        "connector::inherited_unix",
        "connector::inherited_windows",
    },
]


def module_files():
    """Maps each module path (`peer::outbox::queue`) to its file."""
    files = {}
    for directory, _, names in os.walk(ROOT):
        for name in names:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(directory, name)
            rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
            if rel == ["lib"]:
                module = "crate"
            else:
                if rel[-1] == "mod":
                    rel = rel[:-1]
                module = "::".join(rel)
            files[module] = path
    return files


def strip(text):
    """Removes comments and string/char literals, keeping line breaks."""
    out = []
    i, n = 0, len(text)
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
                    if text[i] == "\n":
                        out.append("\n")
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append('""' + "\n" * text.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4]):
            m = re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x..'", text[i:])
            out.append("' '")
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_test_modules(text):
    """Removes `#[cfg(test)] mod name { ... }` blocks; returns the text and
    the names of `#[cfg(test)] mod name;` declarations."""
    test_files = set(re.findall(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text))
    while True:
        m = re.search(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{", text)
        if not m:
            return text, test_files
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        text = text[:m.start()] + "\n" * text.count("\n", m.start(), i) + text[i:]


def use_paths(tree, prefix=""):
    """Expands a use tree (`crate::{a::b, c::{d, e}}`) into full paths."""
    tree = tree.strip()
    brace = tree.find("{")
    if brace < 0:
        return [prefix + tree] if tree else []
    head, body = tree[:brace], tree[brace + 1:tree.rfind("}")]
    parts, depth, start = [], 0, 0
    for i, c in enumerate(body):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    paths = []
    for part in parts:
        paths += use_paths(part, prefix + head)
    return paths


def resolve(path, module, modules):
    """The deepest module a path names, from inside `module`."""
    segments = [s.strip() for s in path.split("::")]
    here = [] if module == "crate" else module.split("::")
    if segments[0] == "crate":
        base, rest = [], segments[1:]
    elif segments[0] in ("super", "self"):
        base = list(here)
        is_dir_module = True  # `super` from a file module is its parent
        while segments and segments[0] in ("super", "self"):
            if segments[0] == "super":
                base = base[:-1]
            segments = segments[1:]
        rest = segments
    else:
        return None
    best = base
    for i in range(len(rest)):
        candidate = base + rest[: i + 1]
        name = "::".join(candidate)
        if name in modules:
            best = candidate
        else:
            break
    return "::".join(best) if best else "crate"


def imports(module, path, modules):
    text = open(path, encoding="utf-8").read()
    text, test_files = drop_test_modules(strip(text))
    found = {}
    for m in re.finditer(r"\buse\s+((?:crate|super|self)\b[^;]*);", text):
        line = text.count("\n", 0, m.start()) + 1
        tree = re.sub(r"\s+as\s+\w+", "", m.group(1))  # `x as y` imports x
        for full in use_paths(re.sub(r"\s+", "", tree)):
            target = resolve(full.replace("::*", ""), module, modules)
            if target:
                found.setdefault(target, line)
    body = re.sub(r"\buse\s+(?:crate|super|self)\b[^;]*;", lambda m: "\n" * m.group(0).count("\n"), text)
    for m in re.finditer(r"(?<![\w:])((?:crate|super)(?:::\w+)+)", body):
        line = body.count("\n", 0, m.start()) + 1
        target = resolve(m.group(1), module, modules)
        if target:
            found.setdefault(target, line)
    found.pop(module, None)
    return found, test_files


def layer_of(module):
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "::"):
                return index
    raise SystemExit(f"layers.py: src/ module {module} is in no layer; add it to LAYERS in ci/layers.py")


def is_ancestor(a, b):
    """True when module `a` contains module `b`."""
    return a == "crate" or b.startswith(a + "::")


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    files = module_files()
    modules = set(files)
    edges, tests_only = {}, set()
    for module, path in sorted(files.items()):
        found, test_files = imports(module, path, modules)
        edges[module] = found
        for name in test_files:
            tests_only.add(name if module == "crate" else module + "::" + name)
    for module in list(edges):
        if any(module == t or module.startswith(t + "::") for t in tests_only):
            del edges[module]
    if "--graph" in sys.argv:
        for module in sorted(edges):
            for target, line in sorted(edges[module].items()):
                print(f"{module} -> {target}  ({files[module]}:{line})")
    problems = 0
    up = []
    for module in sorted(edges):
        for target, line in sorted(edges[module].items()):
            if target not in edges:
                continue
            if layer_of(target) > layer_of(module) and (module, target) not in ALLOWED:
                # A module using its own parent's items is no import up.
                if is_ancestor(target, module) and layer_of(target) == layer_of(module):
                    continue
                up.append((module, target, line))
    for module, target, line in up:
        rel = os.path.relpath(files[module], os.path.join(ROOT, ".."))
        print(f"up: {module} ({LAYERS[layer_of(module)][0]}) imports {target} "
              f"({LAYERS[layer_of(target)][0]}) at {rel}:{line}")
        problems += 1
    # Cycles between files; a child using its ancestor's items is structure.
    graph = {m: {t for t in ts if t in edges and not is_ancestor(t, m)} for m, ts in edges.items()}
    for component in cycles(graph):
        if any(component <= allowed for allowed in ALLOWED_CYCLES):
            continue
        print("cycle: " + " <-> ".join(sorted(component)))
        problems += 1
    # An allowed import up must reach a leaf, or it could close a cycle.
    for module, target in sorted(ALLOWED):
        if edges.get(target):
            print(f"not a leaf: {module} -> {target} is allowed up, but {target} imports "
                  f"{', '.join(sorted(edges[target]))}")
            problems += 1
    allowed_used = [pair for pair in ALLOWED if pair[1] in edges.get(pair[0], {})]
    for pair in sorted(set(ALLOWED) - set(allowed_used)):
        print(f"stale: {pair[0]} -> {pair[1]} is allowed but no longer imported; remove it")
        problems += 1
    if problems:
        print(f"layers.py: {problems} problem(s)")
        return 1
    print(f"layers.py: {len(edges)} modules, {sum(len(t) for t in edges.values())} imports; "
          f"layers hold ({len(ALLOWED)} allowed up, {len(ALLOWED_CYCLES)} allowed cycle)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
