#!/bin/sh
# SPDX-License-Identifier: MIT
# `udfs export`: creates DIR with its parents and the model's
# subdirectories (original/params.json); replaces a stale temp file that a
# killed export left (a symlink there is never followed); SIGINT or SIGTERM
# mid-export removes the temp file and everything the run created, and a
# rerun succeeds; a failed export keeps a DIR that existed before; a file
# path of a hostile catalog that leaves DIR is refused before anything is
# written.
. "$(dirname "$0")/lib.sh"

S=$T/store
new_store "$S"
gen model "$T/base.safetensors" --mb 64 --seed 1
gen finetune "$T/base.safetensors" "$T/ft.safetensors" --seed 2
gen shard "$T/ft.safetensors" "$T/ftdir" --shards 4
must "add-base" "$UC" add-base -q "$S" base "$T/base.safetensors"
must "add ft" "$UC" add -q "$S" --base base --lossless ft="$T/ftdir"
must "add lo" "$UC" add -q "$S" --base base --sparsity 0.9 lo="$T/ftdir"

tmps() { find "$1" -name '*.udfs-tmp' 2>/dev/null; }

# DIR and its parents are created.
if ok "export into a new nested DIR" "$UDFS" export "$S" ft "$T/a/b/c"; then
	same_tree "$T/ftdir" "$T/a/b/c" || fail "export into a/b/c differs"
fi

# A stale temp file of a killed export (SIGKILL cannot be caught): the
# rerun replaces it.
f1=$(ls "$T/ftdir" | head -n 1)
mkdir "$T/e2"
echo junk >"$T/e2/.$f1.udfs-tmp"
chmod 600 "$T/e2/.$f1.udfs-tmp"
if ok "export over a stale temp file" "$UDFS" export "$S" ft "$T/e2"; then
	same_tree "$T/ftdir" "$T/e2" || fail "export over a stale temp differs"
fi
[ -z "$(tmps "$T/e2")" ] || fail "temp files left: $(tmps "$T/e2")"
# ... and a symlink there is removed, not written through.
mkdir "$T/e3"
echo precious >"$T/victim"
ln -s "$T/victim" "$T/e3/.$f1.udfs-tmp"
ok "export over a temp symlink" "$UDFS" export "$S" ft "$T/e3"
[ "$(cat "$T/victim")" = precious ] || fail "export wrote through a symlink"
same_tree "$T/ftdir" "$T/e3" || fail "export over a temp symlink differs"

# SIGINT and SIGTERM mid-export: once a temp file exists, interrupt. The
# export either finished first (then complete) or removed everything it
# created; either way a rerun works and no temp file is left.
for sig in INT TERM; do
	D=$T/sig$sig
	"$UDFS" export "$S" lo "$D" >"$T/out" 2>"$T/err" &
	pid=$!
	i=0
	while [ -z "$(tmps "$D")" ] && kill -0 $pid 2>/dev/null &&
		[ $i -lt 2000 ]; do
		sleep 0.01
		i=$((i + 1))
	done
	kill -$sig $pid 2>/dev/null
	wait $pid
	rc=$?
	[ -z "$(tmps "$D")" ] || fail "SIG$sig left temp files: $(tmps "$D")"
	if [ "$rc" -eq 0 ]; then
		echo "note: export finished before SIG$sig"
		[ "$(ls "$D" | wc -l)" -eq "$(ls "$T/ftdir" | wc -l)" ] ||
			fail "SIG$sig: export exited 0 but is incomplete"
		rm -rf "$D"
	else
		[ "$rc" -eq 1 ] || fail "SIG$sig: export exit $rc, expected 1"
		[ "$(wc -l <"$T/err")" -eq 1 ] ||
			fail "SIG$sig: stderr: $(cat "$T/err")"
		[ -e "$D" ] && fail "SIG$sig: left $D: $(ls -A "$D")"
	fi
	ok "export after SIG$sig" "$UDFS" export "$S" lo "$D"
	[ -z "$(tmps "$D")" ] || fail "rerun left temp files: $(tmps "$D")"
done

# A failed export (a damaged chunk) keeps a DIR that existed, empty.
cp -r "$S" "$T/s2"
damage_pack "$T/s2" ft 3 4 || die "damage ft"
mkdir "$T/keep"
one_line_error "export of a damaged model" udfs \
	"$UDFS" export "$T/s2" ft "$T/keep"
[ -d "$T/keep" ] || fail "a failed export removed the DIR it did not create"
[ -z "$(ls -A "$T/keep" 2>/dev/null)" ] ||
	fail "a failed export left: $(ls -A "$T/keep")"

# Files in subdirectories of the model (udfs(5)): the catalog says
# original/params.json; export creates original/.
mid() { sqlite3 "$1/catalog.db" "SELECT id FROM models WHERE name='$2'"; }
sqlite3 "$T/s2/catalog.db" "UPDATE files SET path = 'original/params.json'
	WHERE path = 'config.json' AND model_id = $(mid "$T/s2" lo)"
if ok "export of a file in a subdirectory" "$UDFS" export "$T/s2" lo "$T/sub"
then
	cmp -s "$T/ftdir/config.json" "$T/sub/original/params.json" ||
		fail "original/params.json differs from config.json"
fi
# A hostile catalog: paths that leave DIR are refused, nothing is written.
for p in ../evil.json /tmp/evil.json original/../../evil.json a//b ./x; do
	sqlite3 "$T/s2/catalog.db" "UPDATE files SET path = '$p'
		WHERE path LIKE '%params.json' OR path IN ('../evil.json',
		'/tmp/evil.json', 'original/../../evil.json', 'a//b', './x')"
	one_line_error "export of path $p" udfs \
		"$UDFS" export "$T/s2" lo "$T/h/out"
	[ -e "$T/h" ] && fail "export of path $p created $(find "$T/h")"
	[ -e "$T/evil.json" ] && fail "export of path $p wrote outside DIR"
done
[ -e /tmp/evil.json ] && fail "export wrote /tmp/evil.json"
finish
