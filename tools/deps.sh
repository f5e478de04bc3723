#!/bin/sh
# SPDX-License-Identifier: MIT
# Checks the layering of src/ (ARCHITECTURE.md, "Rules"):
#  1. a file includes headers of its own folder or of the folders listed
#     before it in the order below, never of a folder after it;
#  2. no two source files call each other, directly or around a longer
#     circle (from the symbols of the objects in BUILD, default build/);
#  3. no header includes another in a circle.
# Prints one line per violation; exits 1 if there is any.
#
# usage: tools/deps.sh [BUILD]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
cd "$top"
exec python3 - "$build" <<'PY'
import collections, glob, os, re, subprocess, sys

# Each folder may include itself and the folders before it, except that
# write and fuse are siblings: both stand on read, neither sees the other.
ORDER = ["common", "codec", "format", "store", "read", "write", "fuse",
         "programs"]
BELOW = {f: set(ORDER[:i + 1]) for i, f in enumerate(ORDER)}
BELOW["fuse"] -= {"write"}
bad = 0

def folder(path):
    parts = path.split("/")
    return parts[1] if len(parts) > 2 else "src"

files = sorted(glob.glob("src/*/*.[ch]") + glob.glob("src/*.[ch]"))
inc = re.compile(r'^#include "([^"]+)"', re.M)
graph = collections.defaultdict(set)
for f in files:
    me = folder(f)
    for h in inc.findall(open(f).read()):
        target = "src/" + h
        if not os.path.exists(target):
            continue
        graph[f].add(target)
        other = folder(target)
        if me in BELOW and other not in BELOW[me]:
            print(f"{f}: includes {h}: {me}/ may not include {other}/")
            bad += 1

def circles(g):
    """The strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v); on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))
    for v in list(g):
        if v not in index:
            visit(v)
    return out

for c in circles(graph):
    print("include circle: " + " -> ".join(c))
    bad += 1

build = sys.argv[1]
# Objects of sources that no longer exist (a build tree kept across a
# rename) would report circles that are not in the code.
objs = sorted(o for o in glob.glob(build + "/src/**/*.o", recursive=True)
              if os.path.exists(os.path.relpath(o, build)[:-2] + ".c"))
defs, undef = {}, collections.defaultdict(set)
for o in objs:
    name = os.path.relpath(o, build)[:-2] + ".c"
    for line in subprocess.run(["nm", o], capture_output=True,
                               text=True, check=True).stdout.splitlines():
        p = line.split()
        if len(p) == 3 and p[1] in "TDBR":
            defs[p[2]] = name
        elif len(p) == 2 and p[0] == "U":
            undef[name].add(p[1])
calls = collections.defaultdict(set)
for f, syms in undef.items():
    for s in syms:
        if s in defs and defs[s] != f:
            calls[f].add(defs[s])
for c in circles(calls):
    print("call circle: " + " -> ".join(c))
    bad += 1
if not objs:
    print(f"deps: no objects under {build}/src (build first)")
    bad += 1
sys.exit(1 if bad else 0)
PY
