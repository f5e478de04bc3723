#!/bin/sh
# SPDX-License-Identifier: MIT
# A store of 1,200 models mounted and read under the usual descriptor
# limit (`ulimit -n 1024`, soft and hard): every model is listed and every
# model's file reads back exactly (cmp), with no EIO; the daemon's open
# descriptors stay bounded (a looked-up model holds no pack open once its
# files are closed), `udfs status` reports the same, and the daemon exits
# 0 after the unmount.
. "$(dirname "$0")/lib.sh"

N=${MANY_MODELS:-1200}
mkdir -p "$T/src"
"$GEN" model "$T/src/base.safetensors" --mb 0.1 --seed 1 >/dev/null 2>&1 ||
	fail "gen_model model"
"$GEN" finetune "$T/src/base.safetensors" "$T/src/ft.safetensors" \
	--seed 2 >/dev/null 2>&1 || fail "gen_model finetune"
"$UDFS_COMPRESS" init "$T/S" >/dev/null || fail "init"
"$UDFS_COMPRESS" add-base -q "$T/S" base "$T/src/base.safetensors" ||
	fail "add-base"
# One add of N models (one source: the descriptors are the mount's).
i=1
set --
while [ $i -le "$N" ]; do
	set -- "$@" "$(printf 'm%04d' $i)=$T/src/ft.safetensors"
	i=$((i + 1))
done
"$UDFS_COMPRESS" add -q "$T/S" --base base --lossless "$@" >/dev/null ||
	fail "add of $N models"
log "$N models added"

ulimit -n 1024 || skip "cannot set ulimit -n 1024"
M=$T/mnt
mount_udfs "$T/S" "$M"
PID=$DAEMON_PID
[ "$(ls "$M" | wc -l)" -eq $((N + 1)) ] ||
	fail "ls: $(ls "$M" | wc -l) entries, expected $((N + 1))"
bad=0
for d in "$M"/m*; do
	cmp "$d/ft.safetensors" "$T/src/ft.safetensors" 2>>"$T/cmp.err" ||
		bad=$((bad + 1))
done
[ "$bad" -eq 0 ] ||
	fail "$bad of $N models did not read back: $(sort "$T/cmp.err" | uniq -c | head -n 3)"
ls -l "$M"/m*/ft.safetensors >/dev/null || fail "ls -l of every model"
fds=$(ls "/proc/$PID/fd" | wc -l)
[ "$fds" -lt 200 ] || fail "the daemon holds $fds descriptors after reading $N models"
"$UDFS" status "$M" >"$T/status" || fail "udfs status"
grep -q "^models_loaded [0-9]" "$T/status" || fail "status: $(cat "$T/status")"
grep -q "^read_errors 0$" "$T/status" || fail "status: $(cat "$T/status")"
log "$N models listed and read under ulimit -n 1024; daemon holds $fds descriptors; $(grep -E '^(models_loaded|storage_fds)' "$T/status" | tr '\n' ' ')"
umount_udfs "$M" "$PID"
log "ok"
