#!/usr/bin/env python3
"""Import cycles between a crate's modules.

Run from anywhere in the repository:

    python3 .ci/import_cycles.py            # every crate of the repository
    python3 .ci/import_cycles.py src        # only the crates whose src/ is under these paths

Exits 1 if it finds a cycle, 0 otherwise; stdlib only.

For each crate's `src/` (the library root, the binary roots in `src/bin/`), it
builds the module tree from the `mod` declarations (`#[path]` included,
inline `mod x { ... }` blocks too), then reads every path that reaches a
module of the crate: `use` trees, and paths in code starting with `crate::`,
`super::`, `self::`, a child module's name or a name a `use` brought in.
Re-exports are followed to the module that defines the item (`crate::Endpoint`
counts as a use of `endpoint` when the root re-exports it from there); a glob
import (`use super::*`) counts as a use of the module it names. Comments,
string literals and `#[cfg(doc)]` imports (doc links only) are skipped.

Cycles are looked for at two granularities: between the crate's top-level
modules, and between the children of each module directory (`wire::encode`
and `wire::limits`, say). A use of a parent by its own child (`super::X`
where `X` is defined in `mod.rs`) joins no two children and is not an edge.
Each cycle is reported as its modules and, for every import edge in it, the
first places (`file:line`) that create it.
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip(text):
    """`text` with comments and string/char literals blanked (newlines kept,
    so offsets and line numbers stay right)."""
    out = []
    i, n = 0, len(text)

    def blank(segment):
        out.append("".join(c if c == "\n" else " " for c in segment))

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            blank(text[i:j])
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(text[i:j])
            i = j
        elif re.match(r'b?r#*"', text[i:i + 260]) and (i == 0 or not re.match(r"[A-Za-z0-9_]", text[i - 1])):
            m = re.match(r'b?r(#*)"', text[i:])
            end = text.find('"' + m.group(1), i + m.end())
            j = n if end < 0 else end + 1 + len(m.group(1))
            blank(text[i:j])
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(text[i:j + 1])
            i = j + 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{1F600}') or a lifetime ('a).
            m = re.match(r"'(\\(u\{[0-9A-Fa-f]*\}|x[0-9A-Fa-f]{2}|.)|[^\\'])'", text[i:i + 16])
            if m:
                blank(text[i:i + m.end()])
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


class Module:
    def __init__(self, path, file):
        self.path = path  # tuple of names from the crate root
        self.file = file  # the file that holds it (an inline module: its file)
        self.children = {}  # name -> Module
        self.uses = {}  # name -> (segments, module path they are read from)
        self.globs = []  # (segments, module path)
        self.items = set()  # names of the items defined at its top level


def parse_use_tree(text):
    """Flattens a `use` tree's text into (segments, alias, is_glob) triples."""
    text = re.sub(r"\s+", "", text)
    results = []

    def walk(prefix, part):
        part = part.strip()
        if not part:
            return
        brace = part.find("{")
        if brace >= 0 and part.endswith("}"):
            head = [s for s in part[:brace].split("::") if s]
            inner = part[brace + 1:-1]
            depth, start = 0, 0
            for k, ch in enumerate(inner + ","):
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                elif ch == "," and depth == 0:
                    walk(prefix + head, inner[start:k])
                    start = k + 1
            return
        alias = None
        segs = [s for s in part.split("::") if s]
        if segs and segs[-1] == "*":
            results.append((prefix + segs[:-1], None, True))
            return
        if segs and segs[-1] == "self":
            segs = segs[:-1]
        results.append((prefix + segs, alias, False))

    walk([], text)
    return results


def use_trees(clean):
    """(start, end, [(segments, alias, is_glob)]) for each `use` item of
    `clean`; those under `#[cfg(doc)]` (doc links only) with no paths."""
    found = []
    for m in re.finditer(r"((?:#\[[^\]]*\]\s*)*)(?:pub(?:\([^)]*\))?\s+)?\buse\s+([^;]*);", clean):
        if re.search(r"cfg\(\s*doc\s*\)", m.group(1)):
            found.append((m.start(), m.end(), []))
            continue
        body = m.group(2)
        # `a as b` keeps its spaces until the alias is read.
        items = []
        spaced = re.sub(r"\s+as\s+(" + IDENT + r")", r"@\1", body)
        for segs, _, glob in parse_use_tree(spaced):
            alias = None
            if segs and "@" in segs[-1]:
                name, alias = segs[-1].split("@")
                segs = segs[:-1] + [name]
            items.append((segs, alias, glob))
        found.append((m.start(), m.end(), items))
    return found


class Crate:
    def __init__(self, name, src):
        self.name = name
        self.src = src
        self.modules = {}  # path tuple -> Module
        self.refs = []  # (from path, segments, file, line)
        self.texts = {}

    def load(self, root_file, root_path=()):
        self.walk_file(root_file, root_path, owner=True)

    def walk_file(self, file, path, owner):
        if not os.path.isfile(file) or path in self.modules:
            return
        with open(file, encoding="utf-8") as f:
            text = f.read()
        clean = strip(text)
        self.texts[file] = text
        module = Module(path, file)
        self.modules[path] = module
        directory = os.path.dirname(file) if owner else os.path.splitext(file)[0]
        # Inline modules: the module each offset belongs to.
        spans = self.inline_spans(clean, path)
        for span_path in {p for _, _, p in spans}:
            if span_path not in self.modules:
                self.modules[span_path] = Module(span_path, file)
                self.modules[span_path[:-1]].children[span_path[-1]] = self.modules[span_path]

        def module_at(offset):
            best = path
            for start, end, p in spans:
                if start <= offset < end and len(p) > len(best):
                    best = p
            return best

        for m in re.finditer(r"((?:#\[[^\]]*\]\s*)*)(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", clean):
            name = m.group(2)
            attrs = text[m.start(1):m.end(1)]
            explicit = re.search(r'#\[\s*path\s*=\s*"([^"]+)"\s*\]', attrs)
            parent = module_at(m.start())
            if explicit:
                child_file = os.path.join(os.path.dirname(file), explicit.group(1))
                child_owner = os.path.basename(child_file) == "mod.rs"
            else:
                child_file = os.path.join(directory, name + ".rs")
                child_owner = False
                if not os.path.isfile(child_file):
                    child_file = os.path.join(directory, name, "mod.rs")
                    child_owner = True
            child_path = parent + (name,)
            self.walk_file(child_file, child_path, child_owner)
            if child_path in self.modules:
                self.modules[parent].children[name] = self.modules[child_path]

        item = r"^(?:pub(?:\([^)]*\))?\s+)?(?:(?:const\s+)?(?:unsafe\s+)?(?:async\s+)?fn|struct|enum|union|trait|type|const|static)\s+(" + IDENT + ")"
        for m in re.finditer(item, clean, re.M):
            self.modules[module_at(m.start())].items.add(m.group(1))
        for m in re.finditer(r"^macro_rules!\s*(" + IDENT + ")", clean, re.M):
            self.modules[module_at(m.start())].items.add(m.group(1))
        line_of = lambda offset: text.count("\n", 0, offset) + 1  # noqa: E731
        code = list(clean)
        for offset, end, items in use_trees(clean):
            code[offset:end] = [c if c == "\n" else " " for c in clean[offset:end]]
            at = module_at(offset)
            for segs, alias, glob in items:
                if not segs:
                    continue
                if glob:
                    self.modules[at].globs.append((segs, at))
                else:
                    self.modules[at].uses[alias or segs[-1]] = (segs, at)
                self.refs.append((at, segs, file, line_of(offset)))
        pattern = r"(?<![A-Za-z0-9_:])(" + IDENT + r"(?:\s*::\s*" + IDENT + r")+)"
        for m in re.finditer(pattern, "".join(code)):
            segs = [s.strip() for s in m.group(1).split("::")]
            self.refs.append((module_at(m.start()), segs, file, line_of(m.start())))

    def inline_spans(self, clean, path):
        spans = []
        stack = []  # (path, depth at open)
        depth = 0
        opening = {}
        for m in re.finditer(r"\bmod\s+(" + IDENT + r")\s*\{", clean):
            opening[m.end() - 1] = m.group(1)
        for i, ch in enumerate(clean):
            if ch == "{":
                if i in opening:
                    parent = stack[-1][0] if stack else path
                    stack.append((parent + (opening[i],), depth, i))
                depth += 1
            elif ch == "}":
                depth -= 1
                if stack and stack[-1][1] == depth:
                    p, _, start = stack.pop()
                    spans.append((start, i, p))
        return spans

    def resolve(self, at, segs, seen=None):
        """The module path an item path read in module `at` lands in, or
        None when it leaves the crate."""
        seen = seen or set()
        key = (at, tuple(segs))
        if key in seen or len(seen) > 50:
            return None
        seen.add(key)
        current = at
        rest = list(segs)
        first = True
        while rest:
            seg = rest[0]
            if seg == "crate" and first:
                current = ()
            elif seg == "super":
                if not current:
                    return None
                current = current[:-1]
            elif seg == "self" and first:
                pass
            elif seg in self.modules[current].children:
                current = current + (seg,)
            elif seg in self.modules[current].uses:
                target, origin = self.modules[current].uses[seg]
                if target[-1:] == [seg] and origin == current and tuple(target) == tuple(rest[:len(target)]):
                    return None  # `use seg;` naming an extern crate
                return self.follow(origin, target, rest[1:], seen, current if not first else None)
            elif seg in self.modules[current].items:
                return current
            else:
                # Brought in by a glob import, or else (first segment) an
                # extern crate, a prelude or local name: nothing of this crate.
                for glob, origin in self.modules[current].globs:
                    source = self.resolve(origin, glob, seen)
                    if source is None or source == current:
                        continue
                    found = self.modules[source]
                    if seg in found.children:
                        return self.resolve(source, rest, seen)
                    if seg in found.uses:
                        target, from_ = found.uses[seg]
                        return self.follow(from_, target, rest[1:], seen, None)
                    if seg in found.items:
                        return source
                return None if first else current
            rest = rest[1:]
            first = False
        return current

    def follow(self, origin, target, rest, seen, fallback):
        """Where an imported name (`target` read in `origin`) followed by
        `rest` lands; `fallback` when the import leaves the crate."""
        landed = self.resolve(origin, target, seen)
        if landed is None:
            return fallback
        if rest:
            deeper = self.resolve(landed, rest, seen)
            return landed if deeper is None else deeper
        return landed


def crates():
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in ("target", ".git", "node_modules") and not d.startswith("target")]
        if "Cargo.toml" in filenames and os.path.isdir(os.path.join(dirpath, "src")):
            with open(os.path.join(dirpath, "Cargo.toml"), encoding="utf-8") as f:
                manifest = f.read()
            m = re.search(r'^\s*name\s*=\s*"([^"]+)"', manifest, re.M)
            if "[package]" in manifest and m:
                yield m.group(1), os.path.join(dirpath, "src")


def roots(src):
    for name in ("lib.rs", "main.rs"):
        if os.path.isfile(os.path.join(src, name)):
            yield name[:-3], os.path.join(src, name)
    bins = os.path.join(src, "bin")
    if os.path.isdir(bins):
        for entry in sorted(os.listdir(bins)):
            full = os.path.join(bins, entry)
            if entry.endswith(".rs"):
                yield "bin " + entry[:-3], full
            elif os.path.isfile(os.path.join(full, "main.rs")):
                yield "bin " + entry, os.path.join(full, "main.rs")


def cycles(edges):
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    nodes = sorted({a for a, _ in edges} | {b for _, b in edges})
    succ = {n: sorted({b for a, b in edges if a == n}) for n in nodes}

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10000)
    for n in nodes:
        if n not in index:
            visit(n)
    return out


def check(crate_name, root_label, root_file):
    crate = Crate(crate_name, os.path.dirname(root_file))
    crate.load(root_file)
    # (scope, from child, to child) -> [(file, line, text)]
    evidence = {}
    for at, segs, file, line in crate.refs:
        target = crate.resolve(at, segs)
        if target is None:
            continue
        common = 0
        while common < min(len(at), len(target)) and at[common] == target[common]:
            common += 1
        if common >= len(at) or common >= len(target):
            continue  # within one module, or between a module and its ancestor
        scope = at[:common]
        key = (scope, at[common], target[common])
        places = evidence.setdefault(key, [])
        if len(places) < 3:
            places.append((os.path.relpath(file, ROOT), line, "::".join(segs)))
    found = 0
    for scope in sorted({k[0] for k in evidence}):
        edges = {(a, b) for (s, a, b) in evidence if s == scope}
        for group in cycles(edges):
            found += 1
            where = "::".join(scope) or "crate root"
            label = crate_name if root_label == "lib" else f"{crate_name} ({root_label})"
            print(f"{label}: cycle among the children of {where}: {', '.join(group)}")
            for a in group:
                for b in group:
                    if (a, b) in edges:
                        for file, line, text in evidence[(scope, a, b)]:
                            print(f"    {a} -> {b}: {file}:{line}: {text}")
    return found


def main(args):
    wanted = [os.path.abspath(a) for a in args]
    total = 0
    for name, src in sorted(crates()):
        if wanted and not any(os.path.abspath(src).startswith(w) or w.startswith(os.path.abspath(src)) for w in wanted):
            continue
        for label, root_file in roots(src):
            total += check(name, label, root_file)
    print(f"{total} import cycle(s)")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
