# SPDX-License-Identifier: MIT
# Shared helpers of the CLI tests (tests/cli/*.sh), sourced, POSIX sh.
#
# Environment (set by tests/run.sh): BUILD (absolute build dir holding udfs,
# udfs-compress and tests/gen_model), UDFS_TOP (repo root), UDFS_SHARED
# (/work/shared or empty). Each test gets a scratch directory $T under
# ${TMPDIR:-/tmp}, removed by a trap, and counts its failures; `finish`
# exits 0 (pass) or 1 (fail), `skip` exits 77.

set -u

: "${UDFS_TOP:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${BUILD:=$UDFS_TOP/build}"
: "${UDFS_SHARED:=}"
UDFS=$BUILD/udfs
UC=$BUILD/udfs-compress
GEN=$BUILD/tests/gen_model
PY=/usr/bin/python3
export LC_ALL=C

for _b in "$UDFS" "$UC" "$GEN"; do
	if [ ! -x "$_b" ]; then
		echo "SKIP: $_b not built (make tests)"
		exit 77
	fi
done

T=$(mktemp -d "${TMPDIR:-/tmp}/udfs-cli-$(basename "$0" .sh).XXXXXX") || exit 1
fails=0
_cleanup_hooks=""

# Register a shell command to run on exit, before the scratch dir goes.
on_exit() { _cleanup_hooks="$1; $_cleanup_hooks"; }

_cleanup() {
	eval "$_cleanup_hooks" 2>/dev/null
	rm -rf "$T"
}
trap '_cleanup' EXIT
trap '_cleanup; exit 130' INT TERM

fail() {
	echo "FAIL: $*"
	fails=$((fails + 1))
}

skip() {
	echo "SKIP: $*"
	exit 77
}

# Abort the test at once (setup failure).
die() {
	echo "FAIL: $*"
	[ -s "$T/err" ] && sed 's/^/    stderr: /' "$T/err"
	exit 1
}

finish() {
	if [ "$fails" -eq 0 ]; then
		echo "PASS: $(basename "$0" .sh)"
		exit 0
	fi
	echo "$(basename "$0" .sh): $fails check(s) failed"
	exit 1
}

# run CMD...: stdout in $T/out, stderr in $T/err, exit status in $rc.
run() {
	"$@" >"$T/out" 2>"$T/err"
	rc=$?
}

# ok DESC CMD...: the command must exit 0.
ok() {
	_d=$1
	shift
	run "$@"
	if [ "$rc" -ne 0 ]; then
		fail "$_d: exit $rc: $*"
		sed 's/^/    stderr: /' "$T/err" | head -n 5
		return 1
	fi
	return 0
}

# must DESC CMD...: like ok, but abort the test on failure.
must() {
	ok "$@" || exit 1
}

# gen ARGS...: the fixture generator, quiet, aborting on failure.
gen() {
	"$GEN" "$@" >"$T/gen.log" 2>&1 || {
		cat "$T/gen.log"
		die "gen_model $*"
	}
}

# new_store DIR: an empty store.
new_store() {
	must "init $1" "$UC" init "$1"
}

# Fingerprint of a store: catalog content plus every other file's hash.
fingerprint() {
	sqlite3 "$1/catalog.db" .dump
	(cd "$1" && find . -type f ! -name 'catalog.db*' | sort |
		xargs -r sha256sum)
	(cd "$1" && find . -type d | sort)
}

# one_line_error DESC PROG CMD...: CMD must fail (non-zero exit) with
# exactly one line on stderr that starts with "PROG: ".
one_line_error() {
	_d=$1 _p=$2
	shift 2
	run "$@"
	if [ "$rc" -eq 0 ]; then
		fail "$_d: exit 0, expected failure: $*"
		return 1
	fi
	_n=$(wc -l <"$T/err")
	if [ "$_n" -ne 1 ]; then
		fail "$_d: $_n lines on stderr, expected 1: $*"
		sed 's/^/    stderr: /' "$T/err" | head -n 6
		return 1
	fi
	printf '%s: %s\n' "$_d" "$(cat "$T/err")" >>"$T/errors.log"
	case "$(cat "$T/err")" in
	"$_p: "?*) ;;
	*)
		fail "$_d: stderr does not start with \"$_p: \": $(cat "$T/err")"
		return 1
		;;
	esac
	return 0
}

# bad DESC STORE PROG CMD...: one_line_error, and STORE unchanged.
bad() {
	_d=$1 _s=$2 _pp=$3
	shift 3
	fingerprint "$_s" >"$T/fp.before"
	one_line_error "$_d" "$_pp" "$@"
	fingerprint "$_s" >"$T/fp.after"
	if ! cmp -s "$T/fp.before" "$T/fp.after"; then
		fail "$_d: store changed: $*"
		diff "$T/fp.before" "$T/fp.after" | head -n 10 | sed 's/^/    /'
	fi
}

# same_tree A B: every regular file of directory (or file) A has an
# identical sha256 at the same relative path in B, and B has no others.
same_tree() {
	if [ -f "$1" ]; then
		[ "$(sha256sum <"$1")" = "$(sha256sum <"$2")" ]
		return
	fi
	(cd "$1" && find . -type f | sort | xargs -r sha256sum) >"$T/tree.a"
	(cd "$2" && find . -type f | sort | xargs -r sha256sum) >"$T/tree.b"
	cmp -s "$T/tree.a" "$T/tree.b"
}

# json_check FILE PYEXPR: FILE parses as JSON and PYEXPR (with j bound to
# it) is true; prints the reason otherwise.
json_check() {
	"$PY" - "$1" "$2" <<'EOF'
import json, sys
try:
    j = json.load(open(sys.argv[1]))
except Exception as e:
    print("not JSON: %s" % e)
    sys.exit(1)
try:
    ok = eval(sys.argv[2])
except Exception as e:
    print("%s: %r" % (sys.argv[2], e))
    sys.exit(1)
if not ok:
    print("false: %s" % sys.argv[2])
    sys.exit(1)
EOF
}

# The store's unreferenced files: tmp/ entries and packs/ or bases/ not in
# the catalog. Prints them; empty output means clean.
orphans() {
	sqlite3 "$1/catalog.db" 'SELECT storage FROM models' | sort >"$T/refs"
	(cd "$1" && find tmp packs bases -mindepth 1 -maxdepth 1 | sort) \
		>"$T/present"
	(cd "$1" && find tmp -mindepth 1 -maxdepth 1)
	grep -v '^tmp/' "$T/present" | comm -23 - "$T/refs"
}

# damage_pack STORE MODEL [NUM DEN]: invert 64 bytes of MODEL's pack at
# NUM/DEN of its length (default the middle), so that a chunk there fails
# its checksum.
damage_pack() {
	_pack=$(sqlite3 "$1/catalog.db" \
		"SELECT storage FROM models WHERE name='$2'") || return 1
	"$PY" - "$1/$_pack" "${3:-1}" "${4:-2}" <<'EOP'
import sys
with open(sys.argv[1], "r+b") as p:
    p.seek(0, 2)
    pos = p.tell() * int(sys.argv[2]) // int(sys.argv[3])
    p.seek(pos)
    b = p.read(64)
    p.seek(pos)
    p.write(bytes(x ^ 0xff for x in b))
EOP
}

shared_data() {
	[ -n "$UDFS_SHARED" ] && [ -d "$UDFS_SHARED/data" ]
}

# st_py FILE PYEXPR: a safetensors file of F32 tensors from PYEXPR, a dict
# of name -> array built with numpy (np) and math; names may hold any
# character, values any float (inf, nan).
st_py() {
	"$PY" - "$1" "$2" <<'EOF_PY'
import json, math, struct, sys
import numpy as np
t = eval(sys.argv[2])
hdr, off, data = {}, 0, b""
for k in sorted(t):
    b = np.ascontiguousarray(t[k], dtype="<f4").tobytes()
    hdr[k] = {"dtype": "F32", "shape": list(np.shape(t[k])),
              "data_offsets": [off, off + len(b)]}
    off += len(b)
    data += b
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + data)
EOF_PY
}
