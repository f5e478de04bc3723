#!/bin/sh
# SPDX-License-Identifier: MIT
# Speed benchmark (issue #11): every row of the issue's table, udfs against
# a peer measured in the same run, the ratio and the goal (ok or MISS).
#
#   sh bench/speed.sh [--mb N] [--runs N] [--group-mb N] [--cache SIZE]
#                     [--quick]
#
# Fixtures (build/tests/gen_model): a BF16 model of N MiB (default 1024)
# and a fine-tune of it, the fine-tune also split into a Hugging Face
# directory of 4 shards; one store with the base (add-base --link), the
# fine-tune lossless ("exact"), lossy ("lossy": --sparsity 0.9 --mask
# seeded) and as the default add stores it ("default": no lossy option,
# the adaptive method under --max-error 0.1), and the shard directory
# lossless and lossy ("exact-hf", "lossy-hf").
# The store is mounted the way fstab does it (no -f: the daemon detaches)
# with -o cache=SIZE (default 256M, a quarter of the model below 1 GiB so
# that no read is served from the daemon's cache twice).
# Rows (GB = 10^9 bytes; medians of --runs runs, default 3):
#   store in page cache   drop caches, cat the base file and the packs,
#                         then read the mounted file: dd bs=1M (one
#                         stream) and preadbench -j 4 (4 threads), against
#                         zerofs -z (the FUSE ceiling) read the same way;
#                         goals >= 0.60 and >= 0.70 of the ceiling (the
#                         default model too: what users get unless they
#                         choose a method)
#   caches dropped        the same reads cold, against the disk bound: the
#                         native cold rate of the fine-tuned file (same
#                         mode) times model bytes / (base + stored bytes
#                         of the model, from udfs info --json); goal >= 0.90
#   base in page cache    drop caches, cat only the base file, read the
#                         model, against the native file with caches
#                         dropped; goal: lossy faster, lossless as fast
#   loader                bench/tools/loadbench (safetensors-style: mmap
#                         each shard, copy every tensor out) of the mounted
#                         shard directory vs the native one, caches
#                         dropped; goal: within 1.1x of the native time.
#                         Twice: on the daemon that served every read
#                         before, and on a daemon mounted for that load
#                         alone (a model loaded once after the mount, as
#                         users do: its cache fills during the load)
#   compression           lossy add with --jobs 1 and --jobs 2 (goal: 2
#                         jobs >= 1.8x faster and >= 300 MB/s of source
#                         bytes), lossless add as the peer; a group add of
#                         two fine-tunes of a --group-mb MiB base (default
#                         128) against the two single adds (goal: about
#                         the sum, within 1.25x); with more than 2 cores
#                         also a lossy add with all cores (up to 64) and
#                         its speedup over --jobs 1 (goal >= 0.75 x cores);
#                         the default add (first run only, all cores)
#                         against UltraDelta s=0.97, the default add before
#                         the adaptive method (issue #12: within 2x), and
#                         an adaptive add under --ratio 25 (mostly
#                         trellis codes) against UltraDelta's add under
#                         the same --ratio 25 (the same request before
#                         the adaptive method)
#   memory                a second mount with -o threads=1024,cache=64M
#                         while preadbench -j 32 -b 4M reads the lossy
#                         model and dd the lossless one: the daemon's peak
#                         RSS (VmHWM); goal <= cache + 64 MiB
# --quick: --mb 256 --runs 1 --group-mb 32 (a smoke test of a few
# minutes; its numbers are not the published ones). Needs root (drop
# caches) and /dev/fuse, else exits 77. Prints the table on stdout,
# progress on stderr; unmounts, checks every daemon exited 0 and removes
# its scratch directory on exit.
set -u

mb=1024 runs=3 gmb=128 cache=""
while [ $# -gt 0 ]; do
	case "$1" in
	--mb) mb=$2; shift ;;
	--runs) runs=$2; shift ;;
	--group-mb) gmb=$2; shift ;;
	--cache) cache=$2; shift ;;
	--quick) mb=256 runs=1 gmb=32 ;;
	-h|--help) sed -n '3,57p' "$0"; exit 0 ;;
	*) echo "speed.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done

top=$(cd "$(dirname "$0")/.." && pwd)
: "${BUILD:=$top/build}"
BUILD=$(cd "$BUILD" && pwd) || exit 1
UDFS=$BUILD/udfs UC=$BUILD/udfs-compress GEN=$BUILD/tests/gen_model
REAPER=$BUILD/tests/reaper ZEROFS=$BUILD/bench/zerofs
PB=$BUILD/bench/preadbench LB=$BUILD/bench/loadbench ME=speed.sh
. "$top/bench/lib.sh"
for b in "$UDFS" "$UC" "$GEN" "$REAPER" "$ZEROFS" "$PB" "$LB"; do
	[ -x "$b" ] || die "$b not built (make tests)"
done
[ -c /dev/fuse ] || { say "skipped: no /dev/fuse"; exit 77; }
[ "$(id -u)" = 0 ] || { say "skipped: needs root to drop caches"; exit 77; }
[ -n "$cache" ] || { [ "$mb" -ge 1024 ] && cache=256M || cache=$((mb / 4))M; }
LOSSY="--sparsity 0.9 --mask seeded"
ncpu=$(nproc)
jall=$((ncpu > 64 ? 64 : ncpu))
load0=$(cut -d' ' -f1-3 /proc/loadavg)
bench_scratch
R=$W/results
: >"$R"

rec() { echo "$1 $2" >>"$R"; } # KEY VALUE
med() { awk -v k="$1" '$1 == k { print $2 }' "$R" | median; }
stored() { # STORE NAME: the model's stored bytes (udfs info --json)
	"$UDFS" info "$1" "$2" --json |
		awk -F'[:,]' '/"stored_bytes"/ { print $2 + 0; exit }'
}
# timed KEY CMD...: run CMD, record its wall seconds under KEY.
timed() {
	_k=$1
	shift
	_t0=$(now)
	"$@" >&2 || die "failed: $*"
	rec "$_k" "$(secs "$_t0" "$(now)")"
}

# mount_bg STORE MNT OPTS: `udfs mount` without -f under the reaper, as
# tests/mount/lib.sh does; waits for "ready" on a notify pipe. Sets DPID
# (the daemon) and RPID (the reaper, whose exit status says whether every
# daemon process exited 0).
NM=0
mount_bg() {
	NM=$((NM + 1))
	mkdir -p "$2"
	mkfifo "$W/ready.$NM" || die "mkfifo"
	cat "$W/ready.$NM" >"$W/ready.$NM.txt" &
	PIDS="$PIDS $!"
	"$REAPER" "$W/exits.$NM" "$UDFS" mount "$1" "$2" \
		-o "notify_pipe=$W/ready.$NM,log=$W/udfs.$NM.log,$3" \
		>"$W/udfs.$NM.out" 2>&1 &
	RPID=$!
	MOUNTS="$MOUNTS $2" PIDS="$PIDS $RPID"
	wait_ready "$W/ready.$NM.txt" "$RPID" "udfs mount $2"
	# The parent returns after the fork; the daemon stays the reaper's.
	wait_until "$RPID" test -s "$W/exits.$NM" ||
		die "udfs mount $2: the parent did not return"
	grep -q ' exit 0$' "$W/exits.$NM" || die "udfs mount $2 failed"
	DPID=$(pgrep -P "$RPID" | head -n 1)
	[ -n "$DPID" ] || die "udfs mount $2: no daemon left"
}

# umount_bg MNT RPID: unmount; the daemon must exit 0 (within 60 s).
umount_bg() {
	umount_one "$1"
	wait_until $$ gone "$2" || die "the daemon of $1 did not exit"
	wait "$2" || die "the daemon of $1 did not exit 0: $(cat "$W"/exits.*)"
}
gone() { ! kill -0 "$1" 2>/dev/null; }

# ---- fixtures and compression --------------------------------------------
say "generating a ${mb} MiB BF16 model, a fine-tune and its 4 shards"
"$GEN" model "$W/base.safetensors" --mb "$mb" >/dev/null || die "gen_model"
"$GEN" finetune "$W/base.safetensors" "$W/ft.safetensors" >/dev/null ||
	die "gen_model finetune"
"$GEN" shard "$W/ft.safetensors" "$W/ft-hf" --shards 4 >/dev/null ||
	die "gen_model shard"
size=$(wc -c <"$W/ft.safetensors" | tr -d ' ')
bsize=$(wc -c <"$W/base.safetensors" | tr -d ' ')
S=$W/store
"$UC" init "$S" >/dev/null || die "init"
"$UC" add-base -q "$S" base "$W/base.safetensors" --link || die "add-base"

# compress_runs: --runs times a lossless add and lossy adds with 1 and 2
# jobs of the fine-tune; the first run's models stay ("exact", "lossy").
compress_runs() {
	r=1
	while [ $r -le "$runs" ]; do
		say "compression, run $r of $runs"
		n=$([ $r = 1 ] && echo exact || echo "x$r")
		timed add.lossless "$UC" add -q "$S" --base base --lossless \
			"$n=$W/ft.safetensors"
		n=$([ $r = 1 ] && echo lossy || echo "l1.$r")
		timed add.j1 "$UC" add -q "$S" --base base $LOSSY --jobs 1 \
			"$n=$W/ft.safetensors"
		timed add.j2 "$UC" add -q "$S" --base base $LOSSY --jobs 2 \
			"l2.$r=$W/ft.safetensors"
		[ "$ncpu" -gt 2 ] && timed add.jall "$UC" add -q "$S" --base base \
			$LOSSY --jobs "$jall" "la.$r=$W/ft.safetensors"
		if [ $r = 1 ]; then
			timed add.default "$UC" add -q "$S" --base base \
				"default=$W/ft.safetensors"
			timed add.ud97 "$UC" add -q "$S" --base base \
				--method ultradelta --sparsity 0.97 \
				"ud97=$W/ft.safetensors"
			timed add.r25 "$UC" add -q "$S" --base base \
				--method adaptive --ratio 25 \
				"r25=$W/ft.safetensors"
			timed add.udr25 "$UC" add -q "$S" --base base \
				--method ultradelta --ratio 25 \
				"udr25=$W/ft.safetensors" 2>/dev/null
			for n in ud97 r25 udr25; do
				"$UDFS" rm "$S" $n 2>/dev/null
			done
		fi
		for n in "x$r" "l1.$r" "l2.$r" "la.$r"; do
			"$UDFS" rm "$S" "$n" 2>/dev/null
		done
		r=$((r + 1))
	done
	"$UDFS" gc -q "$S" || die "gc"
}

# group_runs: two fine-tunes of a --group-mb MiB base, added one at a time
# and as one group, --runs times, in a store of their own.
group_runs() {
	G=$W/gstore
	"$GEN" model "$W/gbase.safetensors" --mb "$gmb" >/dev/null &&
		"$GEN" finetune "$W/gbase.safetensors" "$W/g1.safetensors" \
			--seed 1 >/dev/null &&
		"$GEN" finetune "$W/gbase.safetensors" "$W/g2.safetensors" \
			--seed 2 >/dev/null || die "gen_model (group)"
	"$UC" init "$G" >/dev/null && "$UC" add-base -q "$G" base \
		"$W/gbase.safetensors" --link || die "group store"
	r=1
	while [ $r -le "$runs" ]; do
		say "group add, run $r of $runs"
		timed group.one1 "$UC" add -q "$G" --base base $LOSSY \
			"a$r=$W/g1.safetensors"
		timed group.one2 "$UC" add -q "$G" --base base $LOSSY \
			"b$r=$W/g2.safetensors"
		timed group.both "$UC" add -q "$G" --base base $LOSSY \
			"c$r=$W/g1.safetensors" "d$r=$W/g2.safetensors"
		r=$((r + 1))
	done
	rm -rf "$G"
}

t0=$(now)
compress_runs
say "adding the shard directory (lossless and lossy)"
"$UC" add -q "$S" --base base --lossless "exact-hf=$W/ft-hf" >&2 &&
	"$UC" add -q "$S" --base base $LOSSY "lossy-hf=$W/ft-hf" >&2 ||
	die "add of the shard directory"
group_runs
t1=$(now)
say "compression done in $(secs "$t0" "$t1") s"
exact_b=$(stored "$S" exact) lossy_b=$(stored "$S" lossy)
default_b=$(stored "$S" default)

# ---- reads -----------------------------------------------------------------
M=$W/mnt
mount_bg "$S" "$M/udfs" "cache=$cache"
UD=$DPID UR=$RPID
mount_zerofs "$W/ft.safetensors" "$M/zz" "$W/zz.log" -z
path_of() {
	case "$1" in
	exact | lossy | default) echo "$M/udfs/$1/ft.safetensors" ;;
	zero) echo "$M/zz/ft.safetensors" ;;
	native) echo "$W/ft.safetensors" ;;
	native-hf) echo "$W/ft-hf" ;;
	*-hf) echo "$M/udfs/$1" ;;
	esac
}
for t in exact lossy default zero; do
	s=$(wc -c <"$(path_of "$t")" | tr -d ' ')
	[ "$s" = "$size" ] || die "$t: size $s, expected $size"
done
cmp -s "$(path_of exact)" "$W/ft.safetensors" || die "exact: bytes differ"

base_file=$(find "$S/bases" -type f -name '*.safetensors')
store_cached() { drop; cat $base_file "$S"/packs/* >/dev/null; }
base_cached() { drop; cat $base_file >/dev/null; }

# read_runs: every read row once per run, the targets interleaved.
read_runs() {
	r=1
	while [ $r -le "$runs" ]; do
		say "reads, run $r of $runs"
		for mode in dd pread4; do
			for t in exact lossy default zero; do
				store_cached
				rec "store.$t.$mode" "$(gbps $mode "$(path_of $t)")"
			done
			for t in exact lossy native; do
				drop
				rec "cold.$t.$mode" "$(gbps $mode "$(path_of $t)")"
			done
			for t in exact lossy; do
				base_cached
				rec "base.$t.$mode" "$(gbps $mode "$(path_of $t)")"
			done
		done
		for t in exact-hf lossy-hf native-hf; do
			drop
			v=$("$LB" "$(path_of $t)") || die "loadbench $t"
			rec "load.$t" "$(echo "$v" | awk '{ print $2 }')"
		done
		for t in exact-hf lossy-hf; do
			mount_bg "$S" "$M/fresh" "cache=$cache"
			drop
			v=$("$LB" "$M/fresh/$t") || die "loadbench $t (fresh)"
			rec "fresh.$t" "$(echo "$v" | awk '{ print $2 }')"
			umount_bg "$M/fresh" "$RPID"
		done
		r=$((r + 1))
	done
}
read_runs
hwm_main=$(awk '/^VmHWM/ { print int($2 / 1024) }' "/proc/$UD/status")

# ---- memory ------------------------------------------------------------------
say "memory: threads=1024, cache=64M, 33 readers"
mount_bg "$S" "$M/mem" "threads=1024,cache=64M"
drop
"$PB" -j 32 -b 4M "$M/mem/lossy/ft.safetensors" >/dev/null &
pr=$!
dd if="$M/mem/exact/ft.safetensors" of=/dev/null bs=1M 2>/dev/null ||
	die "dd (memory)"
wait $pr || die "preadbench -j 32 (memory)"
rec mem.hwm "$(awk '/^VmHWM/ { print $2 / 1024 }' "/proc/$DPID/status")"
umount_bg "$M/mem" "$RPID"
umount_bg "$M/udfs" "$UR"

# ---- the table -----------------------------------------------------------------
f2() { awk -v x="$1" 'BEGIN { if (x == "-") print "-"; else printf "%.2f", x }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'; }
# goal OP LIMIT VALUE: "OP LIMIT ok|MISS"
goal() {
	awk -v op="$1" -v l="$2" -v x="$3" 'BEGIN {
		ok = (x != "-") && (op == ">=" ? x >= l : op == ">" ? x > l : x <= l)
		printf "%s %s %s", op, l, ok ? "ok" : "MISS" }'
}
row() { echo "| $1 | $2 | $3 | $4 | $5 |"; } # WHAT UDFS PEER RATIO GOAL

mode_name() { [ "$1" = dd ] && echo "one stream" || echo "4 threads"; }
kind_name() {
	case "$1" in
	exact) echo lossless ;;
	lossy) echo "lossy s=0.9" ;;
	*) echo "default add (adaptive, --max-error 0.1)" ;;
	esac
}
stored_of() { [ "$1" = exact ] && echo "$exact_b" || echo "$lossy_b"; }

echo
echo "### Speed (issue #11): udfs against peers measured in the same run"
echo
echo "| what | udfs now | peer, same run | ratio | goal |"
echo "|---|---|---|---|---|"
for mode in dd pread4; do
	lim=$([ $mode = dd ] && echo 0.60 || echo 0.70)
	c=$(med "store.zero.$mode")
	for t in exact lossy default; do
		v=$(med "store.$t.$mode") q=$(div "$v" "$c")
		row "$(kind_name $t), store in page cache, $(mode_name $mode)" \
			"$(f2 "$v") GB/s" "FUSE ceiling (zerofs -z) $(f2 "$c") GB/s" \
			"$q" "$(goal '>=' "$lim" "$q")"
	done
done
for mode in dd pread4; do
	n=$(med "cold.native.$mode")
	for t in exact lossy; do
		v=$(med "cold.$t.$mode")
		b=$(awk -v n="$n" -v s="$size" -v d="$((bsize + $(stored_of $t)))" \
			'BEGIN { if (n == "-") print "-"; else print n * s / d }')
		q=$(div "$v" "$b")
		row "$(kind_name $t), caches dropped, $(mode_name $mode)" \
			"$(f2 "$v") GB/s" \
			"disk bound $(f2 "$b") GB/s (native $(f2 "$n") GB/s x $(div "$size" "$((bsize + $(stored_of $t)))"))" \
			"$q" "$(goal '>=' 0.90 "$q")"
	done
done
for mode in dd pread4; do
	n=$(med "cold.native.$mode")
	for t in lossy exact; do
		v=$(med "base.$t.$mode") q=$(div "$v" "$n")
		op=$([ $t = lossy ] && echo '>' || echo '>=')
		row "$(kind_name $t), base in page cache, $(mode_name $mode)" \
			"$(f2 "$v") GB/s" "native file, caches dropped $(f2 "$n") GB/s" \
			"$q" "$(goal "$op" 1 "$q")"
	done
done
n=$(med load.native-hf)
# The loader on the bench's warm daemon (load.*), then on a fresh one (fresh.*).
for which in load fresh; do
	for t in exact lossy; do
		v=$(med "$which.$t-hf") q=$(div "$v" "$n")
		what="loader (mmap + copy, 4 shards), $(kind_name $t), caches dropped"
		[ $which = fresh ] && what="loader, $(kind_name $t), caches dropped, first load after the mount"
		row "$what" \
			"$(f2 "$v") s ($(div "$size" "$(awk -v v="$v" 'BEGIN { print v * 1e9 }')") GB/s)" \
			"native directory $(f2 "$n") s" "$q" "$(goal '<=' 1.10 "$q")"
	done
done
j1=$(med add.j1) j2=$(med add.j2) ll=$(med add.lossless)
q=$(div "$j1" "$j2")
row "lossy add s=0.9 (seeded), ${mb} MiB: --jobs 1 / --jobs 2" \
	"$(f2 "$j1") s / $(f2 "$j2") s" "-" "$q" "$(goal '>=' 1.8 "$q")"
v=$(div "$size" "$(awk -v t="$j2" 'BEGIN { print t * 1e6 }')")
l=$(div "$size" "$(awk -v t="$ll" 'BEGIN { print t * 1e6 }')")
row "lossy add s=0.9, --jobs 2, MB/s of source" "$v MB/s" \
	"lossless add (all cores) $l MB/s" "$(div "$v" "$l")" "$(goal '>=' 300 "$v")"
if [ "$ncpu" -gt 2 ]; then
	ja=$(med add.jall) q=$(div "$j1" "$ja")
	row "lossy add s=0.9, --jobs $jall (all cores): speedup over --jobs 1" \
		"$(f2 "$ja") s, $(div "$size" "$(awk -v t="$ja" 'BEGIN { print t * 1e6 }')") MB/s" \
		"-" "$q" "$(goal '>=' "$(awk -v n="$jall" 'BEGIN { print 0.75 * n }')" "$q")"
fi
d=$(med add.default) u=$(med add.ud97) q=$(div "$d" "$u")
row "default add (adaptive, --max-error 0.1), all cores" \
	"$(f2 "$d") s, $(div "$size" "$(awk -v t="$d" 'BEGIN { print t * 1e6 }')") MB/s" \
	"old default (ultradelta s=0.97) $(f2 "$u") s" "$q" "$(goal '<=' 2 "$q")"
d=$(med add.r25) u=$(med add.udr25) q=$(div "$d" "$u")
row "adaptive add --ratio 25 (trellis codes), all cores" \
	"$(f2 "$d") s, $(div "$size" "$(awk -v t="$d" 'BEGIN { print t * 1e6 }')") MB/s" \
	"ultradelta --ratio 25 $(f2 "$u") s" "$q" "$(goal '<=' 2 "$q")"
g=$(med group.both) a=$(med group.one1) b=$(med group.one2)
ab=$(awk -v a="$a" -v b="$b" 'BEGIN { print a + b }')
q=$(div "$g" "$ab")
row "group add of two ${gmb} MiB fine-tunes, s=0.9" "$(f2 "$g") s" \
	"two single adds $(f2 "$a") + $(f2 "$b") s" "$q" "$(goal '<=' 1.25 "$q")"
h=$(med mem.hwm) q=$(div "$h" 128)
row "daemon peak RSS, threads=1024, cache=64M, 33 readers" "$(f2 "$h") MiB" \
	"cache + 64 MiB = 128 MiB" "$q" "$(goal '<=' 1.00 "$q")"

echo
echo "Setup: $(nproc) cores, load average $load0 at the start and" \
	"$(cut -d' ' -f1-3 /proc/loadavg) at the end, kernel $(uname -r);"
echo "build $BUILD; model $size bytes (base $bsize), stored: lossless" \
	"$exact_b, lossy $lossy_b, default $default_b bytes; -o cache=$cache (daemon peak RSS" \
	"$hwm_main MiB); medians of $runs run(s); GB = 10^9 bytes;" \
	"$(date -u +%Y-%m-%dT%H:%MZ)."
exit 0
