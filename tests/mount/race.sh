#!/bin/sh
# SPDX-License-Identifier: MIT
# A lookup racing `udfs rm` never answers EIO: the daemon reads the
# model's catalog rows, then `udfs rm` removes the rows before the daemon
# opens the pack. The daemon serves the snapshot that listed the model and
# its lease names that snapshot, so rm leaves the pack in place (gc
# removes it once no mount serves it, udfs(5)) and the read gives the
# model's exact bytes. strace holds the daemon at that open (a delay
# injected into the openat of the pack) while the test runs rm, so the
# race is taken every time.
. "$(dirname "$0")/lib.sh"

command -v strace >/dev/null 2>&1 || skip "strace is missing"
command -v sqlite3 >/dev/null 2>&1 || skip "sqlite3 is missing"
make_simple_store bf16 2
PACK=$T/S/$(sqlite3 "$T/S/catalog.db" "SELECT storage FROM models WHERE name = 'ft'")
M=$T/mnt
mount_udfs "$T/S" "$M"
PID=$DAEMON_PID

strace -f -p "$PID" -e trace=openat -P "$PACK" \
	-e inject=openat:delay_enter=4000000 -o "$T/strace.out" \
	2>"$T/strace.err" &
ST=$!
PIDS="$PIDS $ST"
wait_for 20 'grep -q attached "$T/strace.err" || ! kill -0 $ST 2>/dev/null'
grep -q attached "$T/strace.err" ||
	skip "strace cannot attach: $(cat "$T/strace.err")"
cat "$M/ft/ft.safetensors" >"$T/ft.read" 2>"$T/cat.err" &
CAT=$!
wait_for 20 'grep -q "openat(.*\.pack" "$T/strace.out"' ||
	fail "the daemon never opened the pack: $(cat "$T/strace.out" "$T/strace.err")"
"$UDFS" rm "$T/S" ft >/dev/null || fail "udfs rm ft"
[ -f "$PACK" ] || fail "rm removed the pack of a model a mount serves"
wait "$CAT" || fail "lookup racing rm: $(cat "$T/cat.err")"
cmp -s "$T/ft.read" "$T/src/ft.safetensors" ||
	fail "lookup racing rm read wrong bytes"
grep -q "DELAYED" "$T/strace.out" || fail "the open was not delayed: $(cat "$T/strace.out")"
kill "$ST"
wait "$ST" 2>/dev/null
wait_for 5 '! ls "$M" | grep -qx ft' || fail "ft still listed 5 s after rm"
log "lookup racing rm: read the snapshot's exact bytes"
cmp "$M/base/base.safetensors" "$T/src/base.safetensors" || fail "base differs"
umount_udfs "$M" "$PID"
log "ok"
