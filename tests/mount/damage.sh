#!/bin/sh
# SPDX-License-Identifier: MIT
# A store damaged under a live mount. Bytes flipped inside chosen chunks of
# a lossless and a lossy pack, and a third pack truncated: every read that
# touches a damaged chunk fails with EIO (dd says "Input/output error"),
# every other chunk still reads right (compared with `udfs export` taken
# before the damage), the daemon's log names model, file, tensor and chunk
# of each failure, and `udfs verify` prints exactly one DAMAGED line per
# damaged chunk. Then the base file is truncated under the mount: reads
# that need it answer EIO, the daemon keeps running and unmounts cleanly;
# a fresh mount or verify of the store with the base file gone fails with
# a clear message, no crash. Which chunks are hit is computed from the
# catalog's chunk map (20-byte records: offset u64, length u32, xxh3 u64).
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
[ -x "$PY" ] || skip "python3 is missing"
command -v sqlite3 >/dev/null 2>&1 || skip "sqlite3 is missing"
S=$T/S
mkdir -p "$T/src"
"$GEN" model "$T/src/base.safetensors" --mb 12 --seed 21 >/dev/null 2>&1 ||
	fail "gen_model"
for i in 1 2 3; do
	"$GEN" finetune "$T/src/base.safetensors" "$T/src/ft$i.safetensors" \
		--seed $((21 + i)) >/dev/null 2>&1 || fail "gen_model finetune"
done
"$UDFS_COMPRESS" init "$S" >/dev/null || fail "init"
"$UDFS_COMPRESS" add-base -q "$S" base "$T/src/base.safetensors" ||
	fail "add-base"
"$UDFS_COMPRESS" add -q "$S" --base base --lossless \
	"ft=$T/src/ft1.safetensors" || fail "add ft"
"$UDFS_COMPRESS" add -q "$S" --base base --sparsity 0.9 \
	"lo=$T/src/ft2.safetensors" || fail "add lo"
"$UDFS_COMPRESS" add -q "$S" --base base --lossless \
	"tr=$T/src/ft3.safetensors" || fail "add tr"
mkdir -p "$T/ref"
for m in ft lo tr base; do
	"$UDFS" export "$S" "$m" "$T/ref/$m" >/dev/null || fail "export $m"
done

# Every chunk of every delta: model file tensor ci file_off out_len
# pack pack_off pack_len.
"$PY" "$UDFS_TOP/tests/gen/chunk_map.py" "$S/catalog.db" >"$T/chunks" ||
	fail "chunk map"
[ -s "$T/chunks" ] || fail "no chunks in the catalog"

# Pick the chunks to damage: three of ft (the last chunk of a multi-chunk
# tensor, and two others), two of lo; flip 8 bytes in the middle of each.
awk '$1 == "ft"' "$T/chunks" >"$T/ft.chunks"
awk '$1 == "lo"' "$T/chunks" >"$T/lo.chunks"
n_ft=$(wc -l <"$T/ft.chunks")
n_lo=$(wc -l <"$T/lo.chunks")
[ "$n_ft" -ge 6 ] && [ "$n_lo" -ge 4 ] || fail "too few chunks ($n_ft, $n_lo)"
{
	awk '$4 == 1' "$T/ft.chunks" | head -n 1
	sed -n "$((n_ft / 3))p;$((2 * n_ft / 3))p" "$T/ft.chunks"
	sed -n "2p;$((n_lo - 1))p" "$T/lo.chunks"
} | sort -u >"$T/hit"
n_hit=$(wc -l <"$T/hit")

# The truncated pack: the last tenth of tr's pack is gone.
tr_pack=$(awk '$1 == "tr" { print $7; exit }' "$T/chunks")
tr_size=$(stat -c %s "$S/$tr_pack")
tr_cut=$((tr_size * 9 / 10))
awk -v cut="$tr_cut" '$1 == "tr" && $8 + $9 > cut' "$T/chunks" >>"$T/hit"
n_trunc=$(($(wc -l <"$T/hit") - n_hit))
n_dmg=$(wc -l <"$T/hit")
log "damaging $n_hit chunks by flipped bytes, $n_trunc by truncation"

MNT=$T/mnt
mount_udfs "$S" "$MNT"
PID=$DAEMON_PID
# Read a little of each model first so that the damage happens to a
# store in use (models loaded, descriptors open).
for m in ft lo tr; do
	head -c 4096 "$MNT/$m/$(ls "$MNT/$m" | head -n 1)" >/dev/null ||
		fail "first read of $m"
done

head -n "$n_hit" "$T/hit" >"$T/hit.flip"
# Invert 8 bytes in the middle of each chosen chunk's stored bytes.
"$PY" - "$S" "$T/hit.flip" <<'EOF' || fail "damage the packs"
import sys
for l in open(sys.argv[2]):
    f = l.split()
    pos = int(f[7]) + int(f[8]) // 2
    with open(sys.argv[1] + "/" + f[6], "r+b") as p:
        p.seek(pos)
        b = p.read(8)
        p.seek(pos)
        p.write(bytes(x ^ 0xff for x in b))
EOF
truncate -s "$tr_cut" "$S/$tr_pack" || fail "truncate"

# dd through the mount: each damaged chunk fails with EIO.
n=0
while read -r model path name ci foff olen pack poff plen; do
	if dd if="$MNT/$model/$path" of=/dev/null bs=65536 \
		iflag=skip_bytes,count_bytes skip="$foff" count="$olen" \
		2>"$T/dd.err"; then
		fail "$model/$path: tensor $name chunk $ci read fine after damage"
	fi
	grep -q 'Input/output error' "$T/dd.err" ||
		fail "$model/$path chunk $ci: $(cat "$T/dd.err")"
	n=$((n + 1))
	kill -0 "$PID" || fail "daemon died"
done <"$T/hit"
log "$n damaged chunks answer EIO"

# Every other chunk, and the headers and base model, read right. The page
# cache works in 4 KiB pages: the bytes of a good chunk that share a page
# with a damaged chunk are unreadable too (EIO, never wrong bytes), so
# those are excused; everything else must read exactly.
"$PY" - "$MNT" "$T/ref" "$T/chunks" "$T/hit" <<'EOF' || fail "good chunks"
import errno, os, sys
mnt, ref, chunks, hit = sys.argv[1:]
PG = 4096
bad = set(tuple(l.split()[:4]) for l in open(hit))
badpages = {}  # (model, path) -> pages touched by a damaged chunk
for l in open(hit):
    f = l.split()
    s, e = int(f[4]), int(f[4]) + int(f[5])
    badpages.setdefault((f[0], f[1]), set()).update(
        range(s // PG, (e - 1) // PG + 1))
good = checked = excused = 0
for l in open(chunks):
    f = l.split()
    key = tuple(f[:4])
    model, path, off, n = f[0], f[1], int(f[4]), int(f[5])
    where = "%s/%s tensor %s chunk %s" % (model, path, f[2], f[3])
    bp = badpages.get((model, path), set())
    fd = os.open(os.path.join(mnt, model, path), os.O_RDONLY)
    if key in bad:
        try:
            os.pread(fd, n, off)
            sys.exit(where + ": damaged, read fine")
        except OSError as e:
            if e.errno != errno.EIO:
                sys.exit(where + ": " + str(e))
        os.close(fd)
        continue
    # Runs of pages of this chunk that hold no damaged byte.
    pos, end = off, off + n
    with open(os.path.join(ref, model, path), "rb") as r:
        while pos < end:
            nxt = min(end, (pos // PG + 1) * PG)
            if pos // PG in bp:
                excused += nxt - pos
                pos = nxt
                continue
            stop = nxt
            while stop < end and stop // PG not in bp:
                stop = min(end, stop + PG)
            try:
                got = os.pread(fd, stop - pos, pos)
            except OSError as e:
                sys.exit("%s: bytes %d+%d: %s" % (where, pos, stop - pos, e))
            r.seek(pos)
            if got != r.read(stop - pos):
                sys.exit("%s: bytes %d+%d: wrong or short" %
                         (where, pos, stop - pos))
            checked += stop - pos
            pos = stop
    os.close(fd)
    good += 1
for model in ("ft", "lo", "tr", "base"):
    for path in os.listdir(os.path.join(ref, model)):
        with open(os.path.join(mnt, model, path), "rb") as a, \
             open(os.path.join(ref, model, path), "rb") as r:
            h = r.read(8)
            hl = int.from_bytes(h, "little") + 8
            if a.read(hl) != h + r.read(hl - 8):
                sys.exit("%s/%s: header differs" % (model, path))
print("%d good chunks, %d bytes compared, %d bytes sharing a page with "
      "damage" % (good, checked, excused))
EOF
cmp "$MNT/base/base.safetensors" "$T/ref/base/base.safetensors" ||
	fail "base model differs"

# The daemon's log names model, file, tensor and chunk of each failure:
# every chunk with flipped bytes by name (a tiny truncated chunk may share
# its page with another damaged one and fail under that one's name), and
# never a good chunk.
while read -r model path name ci foff olen pack poff plen; do
	grep -q "model $model: file $path: tensor \"$name\": chunk $ci:" \
		"$DAEMON_LOG" ||
		fail "daemon log lacks model $model file $path tensor $name chunk $ci"
done <"$T/hit.flip"
awk '{ printf "model %s: file %s: tensor \"%s\": chunk %s:\n", $1, $2, $3, $4 }' \
	"$T/hit" | sort -u >"$T/hit.names"
grep -o 'model [^:]*: file [^:]*: tensor "[^"]*": chunk [0-9]*:' \
	"$DAEMON_LOG" | sort -u >"$T/log.names"
[ -s "$T/log.names" ] || fail "the daemon logged no chunk"
blamed=$(comm -13 "$T/hit.names" "$T/log.names")
[ -z "$blamed" ] || fail "daemon log blames good chunks: $blamed"
log "daemon log names $(wc -l <"$T/log.names") damaged chunks, no good one"

# verify: exactly one DAMAGED line per damaged chunk, each one of them.
"$UDFS" verify "$S" >"$T/verify.out" 2>"$T/verify.err" &&
	fail "verify passed a damaged store"
n_ver=$(grep -c '^DAMAGED' "$T/verify.out")
[ "$n_ver" -eq "$n_dmg" ] ||
	fail "verify reports $n_ver DAMAGED lines, $n_dmg chunks are damaged: $(grep '^DAMAGED' "$T/verify.out" | head -n 12)"
while read -r model path name ci foff olen pack poff plen; do
	grep -q "^DAMAGED model $model: file $path: tensor \"$name\": chunk $ci:" \
		"$T/verify.out" ||
		fail "verify does not name $model $path $name chunk $ci"
done <"$T/hit"
log "verify: $n_ver DAMAGED lines for $n_dmg damaged chunks"

# The base file truncated under the mount: reads needing it answer EIO.
# Use a range of ft not read yet (neither in the page cache nor in the
# daemon's chunk cache): drop the page cache when root can.
sync
echo 3 >/proc/sys/vm/drop_caches 2>/dev/null
bfile=$(find "$S/bases" -name base.safetensors)
cp "$bfile" "$T/base.save"
truncate -s 4096 "$bfile"
fsz=$(stat -c %s "$MNT/base/base.safetensors")
if [ -w /proc/sys/vm/drop_caches ]; then
	dd if="$MNT/base/base.safetensors" of=/dev/null bs=1M \
		iflag=skip_bytes skip=$((fsz / 2)) 2>"$T/dd.err" &&
		fail "truncated base: the base model read fine"
	grep -q 'Input/output error' "$T/dd.err" ||
		fail "truncated base: $(cat "$T/dd.err")"
fi
n_eio=0
for m in ft tr lo; do
	if ! cat "$MNT/$m/"*.safetensors >/dev/null 2>"$T/cat.err"; then
		grep -q 'Input/output error' "$T/cat.err" ||
			fail "truncated base: $m: $(cat "$T/cat.err")"
		n_eio=$((n_eio + 1))
	fi
done
[ "$n_eio" -ge 1 ] || fail "truncated base: no model read failed"
kill -0 "$PID" || fail "daemon died with the base truncated"
grep -q "cannot read the base\|base base: file base.safetensors: cannot read" "$DAEMON_LOG" ||
	fail "daemon log does not say the base could not be read"
umount_udfs "$MNT" "$PID"

# The base file missing: verify and a new mount fail with one clear line.
rm -f "$bfile"
"$UDFS" verify "$S" base >"$T/v.out" 2>"$T/v.err"
rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] || fail "verify without the base: exit $rc"
log "missing base: verify: $(cat "$T/v.err")"
mkdir -p "$T/mnt2"
"$UDFS" mount "$S" "$T/mnt2" -f >"$T/m2.out" 2>"$T/m2.err" &
m2=$!
PIDS="$PIDS $m2"
MOUNTS="$MOUNTS $T/mnt2"
if wait_for 10 "ls '$T/mnt2' 2>/dev/null | grep -q ft || ! kill -0 $m2 2>/dev/null"; then
	if kill -0 "$m2" 2>/dev/null; then
		# A mount that starts anyway must answer EIO for the models
		# that need the missing file, log why, and not crash.
		ls "$T/mnt2/ft" >/dev/null 2>"$T/ls.err"
		cat "$T/mnt2/ft/"*.safetensors >/dev/null 2>"$T/cat.err" &&
			fail "missing base: ft read fine"
		grep -q 'Input/output error' "$T/ls.err" "$T/cat.err" ||
			fail "missing base: ft answers $(cat "$T/ls.err" "$T/cat.err" | head -n 1), not EIO"
		kill -0 "$m2" || fail "missing base: daemon died"
		grep -q 'base.safetensors' "$T/m2.err" ||
			fail "missing base: the daemon logged nothing about the missing base file"
		fusermount3 -u "$T/mnt2"
		wait "$m2"
		log "missing base: the mount came up, ft answers an error"
	else
		wait "$m2"
		rc=$?
		[ "$rc" -lt 128 ] || fail "missing base: mount died of a signal"
		log "missing base: mount refused: $(cat "$T/m2.err")"
	fi
else
	fail "missing base: the mount neither came up nor failed in 10 s"
fi
cp "$T/base.save" "$bfile"
log "missing and truncated base: clear errors, no crash"
echo "damage: $n_hit chunks flipped, $n_trunc truncated, $n_ver DAMAGED lines"
exit 0
