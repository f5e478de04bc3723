#!/bin/sh
# SPDX-License-Identifier: MIT
# Seeing what a running mount does: `udfs status MOUNTPOINT` prints the
# daemon's counters (models loaded, reads, bytes served and decoded, cache
# hits and misses, errors), which move as files are read; a damaged chunk
# counts as a read error. The daemon started without -f logs to the file
# of -o log=FILE (a container has no syslog): the damage report is there.
# Bad uses of `udfs status` fail with one line.
. "$(dirname "$0")/lib.sh"

make_simple_store bf16 4
M=$T/mnt
mount_udfs "$T/S" "$M" -o "log=$T/my.log"
PID=$DAEMON_PID

"$UDFS" status "$M" >"$T/st.0" 2>"$T/err" || fail "udfs status: $(cat "$T/err")"
[ "$(status_value pid "$T/st.0")" = "$PID" ] || fail "status pid: $(cat "$T/st.0")"
[ "$(status_value store "$T/st.0")" = "$T/S" ] || fail "status store: $(cat "$T/st.0")"
cmp "$M/ft/ft.safetensors" "$T/src/ft.safetensors" || fail "ft differs"
"$UDFS" status "$M" >"$T/st.1" || fail "udfs status (2)"
size=$(stat -c %s "$T/src/ft.safetensors")
[ "$(status_value bytes_served "$T/st.1")" -ge "$size" ] ||
	fail "bytes_served after reading $size bytes: $(cat "$T/st.1")"
[ "$(status_value reads "$T/st.1")" -gt 0 ] || fail "reads: $(cat "$T/st.1")"
[ "$(status_value models_loaded "$T/st.1")" -ge 2 ] || fail "models_loaded: $(cat "$T/st.1")"
[ "$(status_value cache_misses "$T/st.1")" -gt 0 ] || fail "misses: $(cat "$T/st.1")"
[ "$(status_value bytes_decoded "$T/st.1")" -gt 0 ] || fail "bytes_decoded: $(cat "$T/st.1")"
[ "$(status_value read_errors "$T/st.1")" -eq 0 ] || fail "read_errors: $(cat "$T/st.1")"
getfattr -n user.udfs.stats "$M" >/dev/null 2>&1 ||
	fail "no user.udfs.stats on the root"
log "status after one read: $(grep -E '^(models_loaded|bytes_served|cache_misses|bytes_decoded) ' "$T/st.1" | tr '\n' ' ')"
umount_udfs "$M" "$PID"

# A damaged chunk: EIO, a read error in status, the report in the log file.
pack=$(ls "$T/S/packs/"*.pack | head -n 1)
printf 'XXXXXXXX' | dd of="$pack" bs=1 seek=200 conv=notrunc 2>/dev/null
mount_udfs "$T/S" "$M" -o "log=$T/my.log"
PID=$DAEMON_PID
cat "$M/ft/ft.safetensors" >/dev/null 2>"$T/err" && fail "damaged ft read fine"
grep -q "Input/output error" "$T/err" || fail "damage: $(cat "$T/err")"
"$UDFS" status "$M" >"$T/st.2" || fail "udfs status (3)"
[ "$(status_value read_errors "$T/st.2")" -gt 0 ] || fail "no read error counted: $(cat "$T/st.2")"
grep -q "udfs\[$PID\]: ft/ft.safetensors: read of .*checksum mismatch" "$T/my.log" ||
	fail "the log file lacks the damage report: $(tail -n 3 "$T/my.log")"
log "damage: EIO, counted, logged to the -o log file"
umount_udfs "$M" "$PID"

# Bad uses: one line, non-zero.
"$UDFS" status "$T" >"$T/out" 2>"$T/err" && fail "status of a plain dir worked"
[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "not the mount point of a running udfs mount" "$T/err" ||
	fail "status of a plain dir: $(cat "$T/err")"
"$UDFS" status >"$T/out" 2>"$T/err"
[ $? -eq 2 ] || fail "status without a mountpoint: not exit 2"
"$UDFS" status "$T/nope" >"$T/out" 2>"$T/err" && fail "status of a missing dir worked"
[ "$(wc -l <"$T/err")" -eq 1 ] || fail "status of a missing dir: $(cat "$T/err")"
log "ok"
