#!/usr/bin/env python3
"""Import arrows between one crate's source files, and the cycles among them.

Usage: import-cycles.py SRC_DIR [-v]. Prints the number of files and arrows and each cycle (a
set of files that import each other round a circle); exits 1 if there is one. scripts/test runs
it over every crate, so the layering docs/ARCHITECTURE.md describes is a rule, not a comment.

An arrow A -> B: file A names an item of file B by a path (`crate::…`, `super::…`, or a child
module's name from its parent). Comments and `#[cfg(test)]` tails are ignored; arrows along
the module tree (child to ancestor, parent to child) are nesting, not counted."""
import os, re, sys
root = sys.argv[1]
if not os.path.isdir(root):
    sys.exit(f"{root}: not a directory")
mods = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if not f.endswith('.rs'): continue
        p = os.path.join(d, f)
        rel = os.path.relpath(p, root)[:-3].split(os.sep)
        if rel[-1] in ('mod', 'lib', 'main'): rel = rel[:-1]
        if 'tests' in rel or (rel and rel[-1].endswith('tests')): continue
        if p.endswith('main.rs') and os.path.exists(os.path.join(d, 'lib.rs')): rel = ['<main>']
        mods[tuple(rel)] = p
def resolve(path):
    for i in range(len(path), -1, -1):
        if tuple(path[:i]) in mods: return tuple(path[:i])
    return None
edges = set()
ident = r'((?:[a-z_0-9]+::)*[A-Za-z_0-9]+)'
for m, p in mods.items():
    src = open(p).read()
    src = re.split(r'#\[cfg\(test\)\]', src)[0]
    src = re.sub(r'//[^\n]*', '', src)
    src = re.sub(r'^\s*(pub(\([a-z]+\))? )?mod [a-z_0-9]+;', '', src, flags=re.M)
    is_dir = os.path.basename(p) in ('mod.rs', 'lib.rs', 'main.rs')
    here = list(m)   # the module path `self` names
    targets = []
    for mt in re.finditer(r'\bcrate::' + ident, src):
        targets.append(mt.group(1).split('::'))
    for mt in re.finditer(r'\b((?:super::)+)' + ident, src):
        up = mt.group(1).count('super::')
        targets.append(here[:len(here) - up] + mt.group(2).split('::'))
    for mt in re.finditer(r'(?<![:\w])([a-z_0-9]+)::' + ident, src):
        if tuple(here + [mt.group(1)]) in mods:
            targets.append(here + [mt.group(1)] + mt.group(2).split('::'))
    for t in targets:
        r = resolve(t)
        # Arrows along the module tree (a child using its parent's items, a parent re-exporting
        # a child's) are how Rust modules nest; only arrows across the tree are counted.
        if r is None or r == m or r == m[:len(r)] or m == r[:len(m)]: continue
        edges.add((m, r))
name = lambda m: '/'.join(m) + ('/mod' if any(k[:len(m)] == m and len(k) > len(m) for k in mods) and m else '') if m else 'lib'
idx, low, st, on, sccs, c = {}, {}, [], set(), [], [0]
adj = {m: sorted(t for (s, t) in edges if s == m) for m in mods}
sys.setrecursionlimit(10000)
def sc(v):
    idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in adj[v]:
        if w not in idx: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        sccs.append(comp)
for v in sorted(mods):
    if v not in idx: sc(v)
print(f"files {len(mods)}, arrows {len(edges)}")
for comp in sccs:
    if len(comp) > 1:
        print(f"cycle of {len(comp)}:", ", ".join(sorted(name(x) for x in comp)))
if '-v' in sys.argv:
    for s, t in sorted(edges): print(f"  {name(s)} -> {name(t)}")
sys.exit(1 if any(len(c) > 1 for c in sccs) else 0)
