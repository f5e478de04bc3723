#!/bin/sh
# SPDX-License-Identifier: MIT
# Concurrent writers and readers on one store: two `udfs-compress add` at
# once (different names, then the same name), an add racing `udfs gc` (gc
# must not take the pack being written), an add-base racing an add, and
# readers (ls, info, verify) during a write. Every writer succeeds or fails
# cleanly with one line; the catalog stays consistent (PRAGMA
# integrity_check, foreign keys, verify).
. "$(dirname "$0")/lib.sh"

MB=${UDFS_CONCURRENT_MB:-32}
S=$T/store
new_store "$S"
gen model "$T/base.safetensors" --mb "$MB" --seed 1
gen finetune "$T/base.safetensors" "$T/a.safetensors" --seed 2
gen finetune "$T/base.safetensors" "$T/b.safetensors" --seed 3
must "add-base" "$UC" add-base -q "$S" base "$T/base.safetensors"

# finished WHAT STATUS ERRFILE: a writer exited 0, or failed with one line.
finished() {
	if [ "$2" -ne 0 ]; then
		if [ "$(wc -l <"$3")" -ne 1 ]; then
			fail "$1: exit $2 with not one line: $(cat "$3")"
		else
			echo "note: $1 failed cleanly: $(cat "$3")"
		fi
		return 1
	fi
	return 0
}

consistent() {
	n=$(sqlite3 "$S/catalog.db" 'PRAGMA integrity_check')
	[ "$n" = ok ] || fail "$1: integrity_check: $n"
	n=$(sqlite3 "$S/catalog.db" 'PRAGMA foreign_key_check' | wc -l)
	[ "$n" -eq 0 ] || fail "$1: foreign_key_check: $n rows"
	ok "$1: verify" "$UDFS" verify -q "$S"
	left=$(orphans "$S")
	[ -z "$left" ] || fail "$1: unreferenced files: $left"
}

# exported NAME SRC: the model exports byte-exact.
exported() {
	ok "export $1" "$UDFS" export "$S" "$1" "$T/e" &&
		{ same_tree "$2" "$T/e/$(basename "$2")" ||
			fail "$1 differs from $2"; }
	rm -rf "$T/e"
}

# 1. Two adds of different names at once.
"$UC" add -q "$S" --base base --lossless a="$T/a.safetensors" 2>"$T/e1" &
p1=$!
"$UC" add -q "$S" --base base --lossless b="$T/b.safetensors" 2>"$T/e2" &
p2=$!
wait $p1
s1=$?
wait $p2
s2=$?
finished "add a" $s1 "$T/e1" && exported a "$T/a.safetensors"
finished "add b" $s2 "$T/e2" && exported b "$T/b.safetensors"
[ $s1 -eq 0 ] || [ $s2 -eq 0 ] || fail "both concurrent adds failed"
consistent "two adds"

# 2. Two adds of the same name at once: exactly one wins.
"$UC" add -q "$S" --base base --lossless c="$T/a.safetensors" 2>"$T/e1" &
p1=$!
"$UC" add -q "$S" --base base --lossless c="$T/b.safetensors" 2>"$T/e2" &
p2=$!
wait $p1
s1=$?
wait $p2
s2=$?
finished "add c (1)" $s1 "$T/e1"
finished "add c (2)" $s2 "$T/e2"
if [ $s1 -eq 0 ] && [ $s2 -eq 0 ]; then
	fail "two adds of one name both succeeded"
elif [ $s1 -ne 0 ] && [ $s2 -ne 0 ]; then
	fail "two adds of one name both failed"
elif [ $s1 -eq 0 ]; then
	exported c "$T/a.safetensors"
else
	# The winner's bytes are under the winner's source name.
	ok "export c" "$UDFS" export "$S" c "$T/e" &&
		{ same_tree "$T/b.safetensors" "$T/e/b.safetensors" ||
			fail "c differs from b"; }
	rm -rf "$T/e"
fi
consistent "same name"

# 3. An add while gc and readers run in a loop.
"$UC" add -q "$S" --base base --lossless d="$T/a.safetensors" 2>"$T/e1" &
p1=$!
i=0
while kill -0 $p1 2>/dev/null; do
	"$UDFS" gc -q "$S" 2>>"$T/gc.err" || fail "gc during add failed"
	"$UDFS" ls "$S" >/dev/null 2>>"$T/ls.err" || fail "ls during add failed"
	"$UDFS" info --json "$S" a >/dev/null 2>>"$T/ls.err" ||
		fail "info during add failed"
	i=$((i + 1))
done
wait $p1
s1=$?
echo "note: $i gc/ls/info rounds during the add"
[ -s "$T/gc.err" ] && fail "gc stderr: $(head -n 3 "$T/gc.err")"
[ -s "$T/ls.err" ] && fail "reader stderr: $(head -n 3 "$T/ls.err")"
if finished "add d with gc" $s1 "$T/e1"; then
	exported d "$T/a.safetensors"
else
	fail "add d failed while gc ran"
fi
consistent "add with gc"

# 4. verify of the whole store while an add-base and an add run.
"$UC" add-base -q "$S" base2 "$T/b.safetensors" 2>"$T/e1" &
p1=$!
"$UC" add -q "$S" --base base --lossless e="$T/b.safetensors" 2>"$T/e2" &
p2=$!
"$UDFS" verify -q "$S" 2>"$T/e3"
s3=$?
wait $p1
s1=$?
wait $p2
s2=$?
[ $s3 -eq 0 ] || fail "verify during writes: $(cat "$T/e3")"
finished "add-base base2" $s1 "$T/e1" && exported base2 "$T/b.safetensors"
finished "add e" $s2 "$T/e2" && exported e "$T/b.safetensors"
consistent "add-base with add"

# 5. rm racing an add that uses the same base: the base stays (it has
# deltas), and the add and the rm of another delta both succeed.
"$UC" add -q "$S" --base base --lossless f="$T/b.safetensors" 2>"$T/e1" &
p1=$!
"$UDFS" rm "$S" a 2>"$T/e2"
s2=$?
wait $p1
s1=$?
[ $s2 -eq 0 ] || fail "rm during add: $(cat "$T/e2")"
finished "add f" $s1 "$T/e1" || fail "add f failed during rm"
consistent "rm with add"

finish
