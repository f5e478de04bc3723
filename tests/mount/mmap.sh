#!/bin/sh
# SPDX-License-Identifier: MIT
# Mounted files map like ordinary files: MAP_SHARED and MAP_PRIVATE maps
# compared byte for byte (tests/gen/mmapcmp.c) for a base, a lossless
# fine-tune (against its source), a lossy one as the default add stores it
# and one under --ratio 30, whose codes are trellis paths (both against
# `udfs export`), and a numpy memmap of one tensor when /usr/bin/python3
# has numpy.
. "$(dirname "$0")/lib.sh"

make_simple_store bf16 5
"$UDFS_COMPRESS" add -q "$T/S" --base base "lossy=$T/src/ft.safetensors" \
	>/dev/null || fail "add lossy"
"$UDFS" export "$T/S" lossy "$T/export" >/dev/null || fail "export lossy"
"$UDFS_COMPRESS" add -q "$T/S" --base base --method adaptive --ratio 30 \
	"tcq=$T/src/ft.safetensors" >/dev/null || fail "add --ratio 30"
"$UDFS" info --json "$T/S" tcq | grep -q '"code": *"[^"]*tcq' ||
	fail "--ratio 30: no trellis code"
"$UDFS" export "$T/S" tcq "$T/export-tcq" >/dev/null || fail "export tcq"
M=$T/mnt
mount_udfs "$T/S" "$M" -o cache=8M
PID=$DAEMON_PID

"$BUILD/tests/mmapcmp" "$M/base/base.safetensors" \
	"$T/src/base.safetensors" || fail "mmap of base"
"$BUILD/tests/mmapcmp" "$M/ft/ft.safetensors" "$T/src/ft.safetensors" ||
	fail "mmap of ft"
"$BUILD/tests/mmapcmp" "$M/lossy/ft.safetensors" \
	"$T/export/ft.safetensors" || fail "mmap of lossy"
cmp "$M/tcq/ft.safetensors" "$T/export-tcq/ft.safetensors" ||
	fail "read of the trellis-coded model"
"$BUILD/tests/mmapcmp" "$M/tcq/ft.safetensors" \
	"$T/export-tcq/ft.safetensors" || fail "mmap of the trellis-coded model"
# Once more, now from the page cache (keep_cache across opens).
"$BUILD/tests/mmapcmp" "$M/ft/ft.safetensors" "$T/src/ft.safetensors" 50 \
	7 || fail "second mmap of ft"

PY=/usr/bin/python3
if [ -x "$PY" ] && "$PY" -c 'import numpy' 2>/dev/null; then
	"$PY" - "$M/ft/ft.safetensors" "$T/src/ft.safetensors" <<'PYEOF' ||
import json, struct, sys
import numpy as np

def tensor(path, name=None):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
    names = sorted(k for k in hdr if k != "__metadata__")
    # The largest tensor: it spans several chunks.
    name = name or max(names, key=lambda k: hdr[k]["data_offsets"][1]
                       - hdr[k]["data_offsets"][0])
    b, e = hdr[name]["data_offsets"]
    return name, np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n + b,
                           shape=(e - b,))

name, a = tensor(sys.argv[1])
_, b = tensor(sys.argv[2], name)
if not np.array_equal(a, b):
    sys.exit("numpy memmap of %s differs" % name)
print("numpy memmap of %s: %d bytes equal" % (name, a.size))
PYEOF
		fail "numpy memmap"
else
	log "numpy not available: memmap part skipped"
fi

umount_udfs "$M" "$PID"
log "ok"
