#!/bin/sh
# SPDX-License-Identifier: MIT
# Crash safety: kill -9 an `add --lossless` (and an `add-base`) of a large
# generated model at several moments. After each kill the store is either
# the old one or the new one: `udfs verify` passes; the model is absent
# from `udfs ls` (or, when the kill came after the commit, complete and
# byte-exact); `udfs gc` removes the leftovers (tmp/ empty, packs/ and
# bases/ only referenced entries); the same name can then be added. Also
# SIGINT: the add stops with one line and leaves nothing behind.
. "$(dirname "$0")/lib.sh"

MB=${UDFS_CRASH_MB:-256}
S=$T/store
new_store "$S"
gen model "$T/base.safetensors" --mb "$MB" --seed 1
gen finetune "$T/base.safetensors" "$T/ft.safetensors" --seed 2
must "add-base" "$UC" add-base -q "$S" base "$T/base.safetensors"

# present NAME: whether `udfs ls` (a reader opened after the kill) lists
# NAME; a failing ls is a failure, never "absent".
present() {
	if ! "$UDFS" ls --json "$S" >"$T/ls.json" 2>"$T/err"; then
		fail "ls after a kill: $(cat "$T/err")"
		return 1
	fi
	json_check "$T/ls.json" '"'"$1"'" in [m["name"] for m in j]' >/dev/null
}

# after_kill NAME SRC WHAT: check the store after a killed writer.
after_kill() {
	ok "$3: verify after kill" "$UDFS" verify -q "$S"
	n=$(sqlite3 "$S/catalog.db" 'PRAGMA integrity_check')
	[ "$n" = ok ] || fail "$3: integrity_check: $n"
	if present "$1"; then
		# The kill landed after the commit: the model must be whole.
		echo "note: $3: the add had committed before the kill"
		ok "$3: export" "$UDFS" export "$S" "$1" "$T/e" &&
			{ same_tree "$2" "$T/e/$(basename "$2")" ||
				fail "$3: committed model differs"; }
		rm -rf "$T/e"
		ok "$3: rm committed model" "$UDFS" rm "$S" "$1"
	fi
	ok "$3: gc" "$UDFS" gc "$S" && echo "$3: $(cat "$T/out")"
	[ -z "$(ls -A "$S/tmp")" ] || fail "$3: tmp/ not empty after gc"
	left=$(orphans "$S")
	[ -z "$left" ] || fail "$3: unreferenced after gc: $left"
}

# Kill at several moments of a ~2 s add (2 cores), including early ones
# (while planning) and late ones (while the catalog commits and publishes:
# a reader opened after a kill between the snapshot and the pointer must
# list the model, as the next writer does).
for delay in 0.2 0.6 1.1 1.6 2.2; do
	"$UC" add -q "$S" --base base --lossless ft="$T/ft.safetensors" \
		>/dev/null 2>"$T/add.err" &
	pid=$!
	sleep "$delay"
	kill -9 $pid 2>/dev/null
	{ wait $pid; } 2>/dev/null
	st=$?
	[ $st -eq 0 ] &&
		echo "note: add finished before the kill at ${delay}s"
	after_kill ft "$T/ft.safetensors" "add killed at ${delay}s"
done

# The same for add-base (a copy into tmp/ then a rename).
for delay in 0.3; do
	"$UC" add-base -q "$S" base2 "$T/ft.safetensors" >/dev/null 2>&1 &
	pid=$!
	sleep "$delay"
	kill -9 $pid 2>/dev/null
	{ wait $pid; } 2>/dev/null
	after_kill base2 "$T/ft.safetensors" "add-base killed at ${delay}s"
done

# SIGINT: a clean stop, one line, nothing left (no gc needed).
fingerprint "$S" >"$T/fp.before"
"$UC" add -q "$S" --base base --lossless ft="$T/ft.safetensors" \
	>/dev/null 2>"$T/int.err" &
pid=$!
sleep 0.8
kill -INT $pid 2>/dev/null
wait $pid
st=$?
if [ $st -ne 0 ]; then
	[ "$(wc -l <"$T/int.err")" -eq 1 ] ||
		fail "SIGINT: not one line on stderr: $(cat "$T/int.err")"
	fingerprint "$S" >"$T/fp.after"
	cmp -s "$T/fp.before" "$T/fp.after" ||
		fail "SIGINT: store changed: $(diff "$T/fp.before" "$T/fp.after" | head -n 5)"
else
	echo "note: add finished before SIGINT"
	"$UDFS" rm "$S" ft
fi

ok "verify after the crashes and gc" "$UDFS" verify -q "$S"

# Finally the same name goes in, whole.
if ok "add after crashes" "$UC" add -q "$S" --base base --lossless \
	ft="$T/ft.safetensors"; then
	ok "verify ft" "$UDFS" verify "$S" ft
	grep -q 'sha256 checked' "$T/out" || fail "verify did not check sha256"
fi
left=$(orphans "$S")
[ -z "$left" ] || fail "unreferenced at the end: $left"

finish
