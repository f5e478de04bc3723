#!/bin/sh
# SPDX-License-Identifier: MIT
# One store on a GlusterFS volume served on this machine, two client
# mounts standing for two nodes, a background `udfs mount` on each
# (tests/cluster/lib.sh sets it up; root, glusterfs-server and -client).
# Measures:
#  - commit to visibility: from the moment `udfs-compress add` on node1
#    exits (committed and published) until the model is listed by node2's
#    mount; --adds N times, median and max;
#  - read throughput of a --mb MiB model through udfs over the GlusterFS
#    client mount, cold (daemon just started, page caches dropped) and warm
#    (read again), against dd of the base file through the same client;
#  - the cost of one publish with a catalog of --models models (the rows
#    of one --mb model duplicated by SQL): wall time of one `udfs rm`
#    (lock, copy, delete, commit, snapshot, renames) and the snapshot size,
#    on the GlusterFS volume and on the local disk.
# Not a test: it prints numbers and fails only when something breaks.
# Usage: BUILD=build sh bench/cluster.sh [--mb 256] [--adds 20]
#        [--models 1000]
set -u
: "${BUILD:=$(pwd)/build}"
BUILD=$(cd "$BUILD" && pwd)
export BUILD
top=$(cd "$(dirname "$0")/.." && pwd)
MB=256 ADDS=20 MODELS=1000
while [ $# -gt 0 ]; do
	case $1 in
	--mb) MB=$2; shift 2 ;;
	--adds) ADDS=$2; shift 2 ;;
	--models) MODELS=$2; shift 2 ;;
	*) echo "usage: $0 [--mb N] [--adds N] [--models N]" >&2; exit 2 ;;
	esac
done
. "$top/tests/mount/lib.sh"
. "$top/tests/cluster/lib.sh"
trap 'umount_all_bg; gluster_down; cleanup' EXIT
gl_skip_unless_usable

now() { date +%s.%N; }
secs() { awk "BEGIN { printf \"%.3f\", $2 - $1 }"; } # start end
mbps() { awk "BEGIN { printf \"%.1f\", $1 / 1048576 / $2 }"; } # bytes s
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
stats() { # file of numbers: "median max"
	sort -n "$1" | awk '{ v[NR] = $1 } END {
		m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "median %.3f s, max %.3f s (n=%d)\n", m, v[NR], NR }'
}

gluster_up 2
N1=$T/node1/store N2=$T/node2/store
"$UDFS_COMPRESS" init "$N1" || fail "init"
mkdir -p "$T/base" "$T/ft" "$T/small"
$GEN model "$T/base/model.safetensors" --mb "$MB" --seed 1 >/dev/null 2>&1
$GEN finetune "$T/base/model.safetensors" "$T/ft/model.safetensors" \
	--seed 2 >/dev/null 2>&1
$GEN model "$T/small/model.safetensors" --mb 1 --seed 3 >/dev/null 2>&1
"$UDFS_COMPRESS" add-base -q "$N1" base "$T/base" || fail "add-base"
"$UDFS_COMPRESS" add-base -q "$N1" small "$T/small" || fail "add-base small"
"$UDFS_COMPRESS" add -q "$N1" --base base --lossless ft="$T/ft" || fail "add"
mount_bg "$N1" "$T/m1" 9>&-
mount_bg "$N2" "$T/m2" 9>&-
ls "$T/m2" >/dev/null

echo "== commit to visibility on the other node ($ADDS adds)"
: >"$T/lat"
for i in $(seq 1 "$ADDS"); do
	cp -r "$T/small" "$T/s$i"
	"$UDFS_COMPRESS" add-base -q "$N1" "v$i" "$T/s$i" || fail "add v$i"
	t0=$(now)
	while ! [ -d "$T/m2/v$i" ]; do sleep 0.01; done
	echo "$(secs "$t0" "$(now)")" >>"$T/lat"
	rm -rf "$T/s$i"
done
echo "visible on node2: $(stats "$T/lat")"

echo "== reads of the $MB MiB models through node2"
basefile=$(ls -d "$N2"/bases/*/model.safetensors | while read -r f; do
	[ "$(stat -c %s "$f")" -eq "$(stat -c %s "$T/base/model.safetensors")" ] &&
		echo "$f"
done | head -n 1)
bytes=$(stat -c %s "$T/ft/model.safetensors")
read_one() { # what path
	t0=$(now)
	dd if="$2" of=/dev/null bs=1M 2>/dev/null || fail "read $2"
	echo "$1: $(mbps "$bytes" "$(secs "$t0" "$(now)")") MB/s"
}
drop_caches
read_one "dd of the base file, GlusterFS client, cold" "$basefile"
read_one "dd of the base file, GlusterFS client, warm" "$basefile"
for what in ft base; do
	umount_all_bg
	drop_caches
	mount_bg "$N2" "$T/m2" 9>&-
	read_one "udfs $what, cold" "$T/m2/$what/model.safetensors"
	read_one "udfs $what, warm" "$T/m2/$what/model.safetensors"
	cmp -s "$T/m2/$what/model.safetensors" "$T/$what/model.safetensors" ||
		fail "$what read back wrong bytes"
done
umount_all_bg

# One publish with MODELS models in the catalog: ft's rows duplicated.
publish_cost() { # store label
	sqlite3 "$1/catalog.db" <<EOF || fail "duplicate rows"
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n
                        WHERE i < $MODELS - 1)
INSERT INTO models(name, kind, base_id, method, params, seed, created,
                   source_bytes, stored_bytes, sparsity, storage)
SELECT 'dup' || i, kind, base_id, method, params, seed, created,
       source_bytes, stored_bytes, sparsity, storage
FROM models, n WHERE name = 'ft';
INSERT INTO files(model_id, path, kind, size, data_offset, header, sha256)
SELECT m.id, f.path, f.kind, f.size, f.data_offset, f.header, f.sha256
FROM models m, files f
WHERE m.name LIKE 'dup%' AND f.model_id = (SELECT id FROM models
                                           WHERE name = 'ft');
INSERT INTO tensors SELECT nf.id, t.idx, t.name, t.dtype, t.shape, t.begin,
       t."end", t.encoding, t.base_file_id, t.base_begin, t.mask, t.vkind,
       t.bits, t.lo, t.step, t.gain, t.rate, t.mseed, t.stored_bytes, t.chunks
FROM models m JOIN files nf ON nf.model_id = m.id
JOIN files f ON f.path = nf.path
  AND f.model_id = (SELECT id FROM models WHERE name = 'ft')
JOIN tensors t ON t.file_id = f.id
WHERE m.name LIKE 'dup%';
EOF
	# The hand edit is published by the next writer: do that first.
	"$UDFS" gc -q "$1" || fail "gc"
	t0=$(now)
	"$UDFS" rm "$1" dup1 || fail "rm"
	t=$(secs "$t0" "$(now)")
	read -r g _ <"$1/catalog.current"
	size=$(stat -c %s "$1/snapshots/$g.db")
	n=$("$UDFS" ls "$1" | tail -n +2 | wc -l)
	printf "%s: %d models, snapshot %.1f MiB, one publish (udfs rm) %.3f s\n" \
		"$2" "$n" "$(awk "BEGIN { print $size / 1048576 }")" "$t"
}
echo "== one publish with $MODELS models (rows of the $MB MiB model)"
publish_cost "$N1" "GlusterFS"
L=$T/local
"$UDFS_COMPRESS" init "$L" || fail "init local"
"$UDFS_COMPRESS" add-base -q "$L" base "$T/base" || fail "add-base local"
"$UDFS_COMPRESS" add -q "$L" --base base --lossless ft="$T/ft" || fail "add local"
publish_cost "$L" "local disk ($(stat -f -c %T "$T"))"
