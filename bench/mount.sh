#!/bin/sh
# SPDX-License-Identifier: MIT
# Mount benchmark (issues #3 and #4): read throughput of a udfs-mounted
# model against the FUSE ceiling and squashfuse, measured in one run.
#
#   sh bench/mount.sh [--mb N] [--runs N] [--cache SIZE] [--no-squash]
#                     [--sq-level L] [--no-debug-run] [--perf]
#
# A generated BF16 model of N MiB (default 2048) and a fine-tune of it are
# stored in one store both --lossless ("exact") and as UltraDelta at
# s = 0.97 with an explicit mask ("lossy"), and the store mounted (`udfs
# mount -f -o cache=SIZE`, default 256M). Targets, all the same size:
#   source       the fine-tuned file itself (native filesystem)
#   udfs-exact   the lossless model through the udfs mount
#   udfs-lossy   the lossy model through the udfs mount
#   zerofs-pass  bench/tools/zerofs passing the fine-tuned file through
#   zerofs-zero  zerofs -z: zeros, no work per request (the FUSE ceiling)
#   sqfs-exact   squashfuse, zstd squashfs image of the fine-tuned file
#   sqfs-lossy   squashfuse, image of the lossy model (udfs export)
# The images are made with mksquashfs -comp zstd -noappend at zstd level
# --sq-level (default 3: mksquashfs's default, 15, takes over ten minutes
# for 4 GiB on two cores, and zstd decodes as fast at either level).
# Modes: dd bs=1M (sequential read), mmap (touch every page, one thread),
# pread4 (4 threads, a quarter each, 1 MiB preads). Each is run cold (sync;
# drop_caches before; root only) and then warm (right after the cold run),
# --runs times (default 3) with the targets interleaved; medians in GB/s
# (10^9 bytes/s). Also: the mounts' read_ahead_kb, udfs's peak RSS
# (VmHWM), a cmp of every target, and (unless --no-debug-run) the request
# sizes udfs and zerofs see for a cold dd of 256 MiB. --perf records the
# udfs daemon during one cold dd of udfs-exact (perf record -g) and prints
# the top of the report. Needs root for the cold runs (without, they are
# skipped) and /dev/fuse; prints tables to stdout, progress to stderr.
set -u

mb=2048 runs=3 cache=256M squash=1 debugrun=1 perf=0 sqlevel=3
while [ $# -gt 0 ]; do
	case "$1" in
	--mb) mb=$2; shift ;;
	--runs) runs=$2; shift ;;
	--cache) cache=$2; shift ;;
	--no-squash) squash=0 ;;
	--sq-level) sqlevel=$2; shift ;;
	--no-debug-run) debugrun=0 ;;
	--perf) perf=1 ;;
	-h|--help) sed -n '3,33p' "$0"; exit 0 ;;
	*) echo "mount.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done

top=$(cd "$(dirname "$0")/.." && pwd)
: "${BUILD:=$top/build}"
BUILD=$(cd "$BUILD" && pwd) || exit 1
UDFS=$BUILD/udfs UC=$BUILD/udfs-compress GEN=$BUILD/tests/gen_model
ZEROFS=$BUILD/bench/zerofs PB=$BUILD/bench/preadbench ME=mount.sh
. "$top/bench/lib.sh"
for b in "$UDFS" "$UC" "$GEN" "$ZEROFS" "$PB"; do
	[ -x "$b" ] || { echo "mount.sh: $b not built (make tests)" >&2; exit 1; }
done
[ -c /dev/fuse ] || { echo "mount.sh: skipped: no /dev/fuse" >&2; exit 77; }
if [ "$squash" = 1 ]; then
	command -v mksquashfs >/dev/null && command -v squashfuse >/dev/null || {
		echo "mount.sh: no mksquashfs/squashfuse: --no-squash assumed" >&2
		squash=0
	}
fi
root=0
[ "$(id -u)" = 0 ] && root=1
[ "$root" = 1 ] || echo "mount.sh: not root: cold runs skipped" >&2

bench_scratch
ra_of() { # MNT: the mount's bdi readahead in KiB
	cat "/sys/class/bdi/$(mountpoint -d "$1")/read_ahead_kb" 2>/dev/null ||
		echo "?"
}

# mount_udfs STORE MNT LOG [OPTS]: sets UPID.
mount_udfs() {
	mkdir -p "$2"
	rm -f "$W/ready.fifo"
	mkfifo "$W/ready.fifo" || die "mkfifo"
	"$UDFS" mount "$1" "$2" -f -o "notify_pipe=$W/ready.fifo${4:+,$4}" \
		>"$3" 2>&1 &
	UPID=$!
	MOUNTS="$MOUNTS $2" PIDS="$PIDS $UPID"
	cat "$W/ready.fifo" >"$3.ready"
	grep -q '^ready$' "$3.ready" || { cat "$3" "$3.ready" >&2; die "udfs mount failed"; }
}

# mount_squash IMG MNT
mount_squash() {
	mkdir -p "$2"
	squashfuse -f "$1" "$2" 2>"$2.err" &
	_p=$!
	MOUNTS="$MOUNTS $2" PIDS="$PIDS $_p"
	wait_until "$_p" mountpoint -q "$2" ||
		die "squashfuse $2: not mounted (died, or 60 s passed)"
}

# ---- fixtures -----------------------------------------------------------
t0=$(now)
say "generating a ${mb} MiB BF16 model and a fine-tune"
"$GEN" model "$W/base.safetensors" --mb "$mb" >/dev/null || die "gen_model model"
"$GEN" finetune "$W/base.safetensors" "$W/ft.safetensors" >/dev/null ||
	die "gen_model finetune"
size=$(wc -c <"$W/ft.safetensors" | tr -d ' ')
t1=$(now)
say "generated in $(secs "$t0" "$t1") s; storing (lossless and s=0.97)"
S=$W/store
"$UC" init "$S" >/dev/null || die "init"
"$UC" add-base "$S" base "$W/base.safetensors" --link -q || die "add-base"
ta=$(now)
"$UC" add "$S" --base base exact="$W/ft.safetensors" --lossless -q ||
	die "add --lossless"
tb=$(now)
"$UC" add "$S" --base base lossy="$W/ft.safetensors" --sparsity 0.97 \
	--mask explicit -q || die "add --sparsity 0.97"
tc=$(now)
store_mb=$(du -sm "$S/packs" 2>/dev/null | awk '{ print $1 }')
say "add --lossless $(secs "$ta" "$tb") s, add lossy $(secs "$tb" "$tc") s"
"$UDFS" export "$S" lossy "$W/lossy" -q || die "export lossy"
# first_st DIR: the name of the first .safetensors file in DIR, if any.
first_st() {
	for _f in "$1"/*.safetensors; do
		[ -e "$_f" ] && { basename "$_f"; return; }
	done
}
lfile=$(first_st "$W/lossy")
[ -n "$lfile" ] || die "export lossy: no .safetensors file"

if [ "$squash" = 1 ]; then
	say "mksquashfs (zstd) of the fine-tuned and the lossy file"
	mkdir -p "$W/sq-exact"
	ln "$W/ft.safetensors" "$W/sq-exact/ft.safetensors" || die "ln"
	td=$(now)
	mksquashfs "$W/sq-exact" "$W/exact.sqfs" -comp zstd -noappend \
		-Xcompression-level "$sqlevel" -no-progress >/dev/null || die "mksquashfs"
	mksquashfs "$W/lossy" "$W/lossy.sqfs" -comp zstd -noappend \
		-Xcompression-level "$sqlevel" -no-progress >/dev/null || die "mksquashfs"
	te=$(now)
	say "mksquashfs: $(secs "$td" "$te") s for both"
fi

# ---- mounts -------------------------------------------------------------
M=$W/mnt
mount_udfs "$S" "$M/udfs" "$W/udfs.log" "cache=$cache"
UDFS_PID=$UPID
ufile=$(first_st "$M/udfs/exact")
[ -n "$ufile" ] || die "no .safetensors file in $M/udfs/exact"
mount_zerofs "$W/ft.safetensors" "$M/zp" "$W/zp.log"
mount_zerofs "$W/ft.safetensors" "$M/zz" "$W/zz.log" -z
if [ "$squash" = 1 ]; then
	mount_squash "$W/exact.sqfs" "$M/sqe"
	mount_squash "$W/lossy.sqfs" "$M/sql"
fi

TARGETS="source udfs-exact udfs-lossy zerofs-pass zerofs-zero"
[ "$squash" = 1 ] && TARGETS="$TARGETS sqfs-exact sqfs-lossy"
path_of() {
	case "$1" in
	source) echo "$W/ft.safetensors" ;;
	udfs-exact) echo "$M/udfs/exact/$ufile" ;;
	udfs-lossy) echo "$M/udfs/lossy/$ufile" ;;
	zerofs-pass) echo "$M/zp/ft.safetensors" ;;
	zerofs-zero) echo "$M/zz/ft.safetensors" ;;
	sqfs-exact) echo "$M/sqe/ft.safetensors" ;;
	sqfs-lossy) echo "$M/sql/$lfile" ;;
	esac
}
mnt_of() {
	case "$1" in
	source) echo "" ;;
	udfs-*) echo "$M/udfs" ;;
	zerofs-pass) echo "$M/zp" ;;
	zerofs-zero) echo "$M/zz" ;;
	sqfs-exact) echo "$M/sqe" ;;
	sqfs-lossy) echo "$M/sql" ;;
	esac
}
RA=$W/readahead
for t in $TARGETS; do
	mp=$(mnt_of "$t")
	if [ -n "$mp" ]; then
		echo "$t $(ra_of "$mp")" >>"$RA"
	else
		echo "$t native" >>"$RA"
	fi
done
for t in $TARGETS; do
	s=$(wc -c <"$(path_of "$t")" | tr -d ' ')
	[ "$s" = "$size" ] || die "$t: size $s, expected $size"
done

# ---- timings ------------------------------------------------------------
R=$W/results
: >"$R"
MODES="dd mmap pread4"
tt0=$(now)
r=1
while [ $r -le "$runs" ]; do
	say "run $r of $runs"
	for t in $TARGETS; do
		f=$(path_of "$t")
		for mode in $MODES; do
			if [ "$root" = 1 ]; then
				drop
				v=$(gbps "$mode" "$f") || die "$t $mode cold"
				echo "$t $mode cold $v" >>"$R"
			fi
			v=$(gbps "$mode" "$f") || die "$t $mode warm"
			echo "$t $mode warm $v" >>"$R"
		done
	done
	r=$((r + 1))
done
tt1=$(now)
say "timings done in $(secs "$tt0" "$tt1") s"

hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$UDFS_PID/status")

# ---- optional: perf profile of a cold read ------------------------------
if [ "$perf" = 1 ] && [ "$root" = 1 ] && command -v perf >/dev/null; then
	say "perf record of udfs during a cold dd of udfs-exact"
	drop
	perf record -g -o "$W/perf.data" -p "$UDFS_PID" >/dev/null 2>&1 &
	pp=$!
	sleep 1
	dd if="$(path_of udfs-exact)" of=/dev/null bs=1M 2>/dev/null
	kill -INT "$pp"
	wait "$pp" 2>/dev/null
	perf report -i "$W/perf.data" --no-children --sort symbol \
		--stdio 2>/dev/null | grep -v '^#' | grep '%' | head -n 40 \
		>"$W/perf.txt"
	perf report -i "$W/perf.data" --children --sort symbol \
		--stdio -g none 2>/dev/null | grep -v '^#' | grep '%' |
		head -n 40 >"$W/perf-children.txt"
fi

# ---- correctness: every target has the expected bytes -------------------
for t in $TARGETS; do
	f=$(path_of "$t")
	case "$t" in
	zerofs-zero) cmp -s -n "$size" "$f" /dev/zero ;;
	*-lossy) cmp -s "$f" "$W/lossy/$lfile" ;;
	*) cmp -s "$f" "$W/ft.safetensors" ;;
	esac || die "$t: content differs from its reference"
done

# ---- optional: request sizes seen by the daemons ------------------------
reqs_udfs="" reqs_zero=""
if [ "$debugrun" = 1 ] && [ "$root" = 1 ]; then
	hist() { # LOG: "SIZE_KiB:COUNT ..." of read requests
		sed -n 's/.*read .*size=\([0-9]*\).*/\1/p' "$1" | sort -n |
			uniq -c | sort -rn | head -n 4 |
			awk '{ printf "%s%dK:%d", (NR > 1) ? " " : "", $2 / 1024, $1 }'
	}
	umount_one "$M/udfs"
	wait "$UDFS_PID" 2>/dev/null
	mount_udfs "$S" "$M/udfs" "$W/udfs-debug.log" "cache=$cache,debug"
	drop
	dd if="$(path_of udfs-exact)" of=/dev/null bs=1M count=256 2>/dev/null
	reqs_udfs=$(hist "$W/udfs-debug.log")
	umount_one "$M/udfs"
	wait "$UPID" 2>/dev/null
	umount_one "$M/zz"
	mount_zerofs "$W/ft.safetensors" "$M/zz" "$W/zz-debug.log" "-z -d"
	drop
	dd if="$(path_of zerofs-zero)" of=/dev/null bs=1M count=256 2>/dev/null
	reqs_zero=$(hist "$W/zz-debug.log.err")
fi

# ---- tables -------------------------------------------------------------
med() { # TARGET MODE STATE
	awk -v t="$1" -v m="$2" -v s="$3" '$1 == t && $2 == m && $3 == s { print $4 }' "$R" |
		sort -g | awk '{ v[NR] = $1 } END { if (NR) printf "%.2f", v[int((NR + 1) / 2)]; else printf "-" }'
}
echo
echo "### Mount read throughput, GB/s (median of $runs), ${mb} MiB BF16 file"
echo
echo "| target | dd cold | dd warm | mmap cold | mmap warm | pread4 cold | pread4 warm | readahead KiB |"
echo "|---|---|---|---|---|---|---|---|"
for t in $TARGETS; do
	line="| $t"
	for mode in $MODES; do
		line="$line | $(med "$t" "$mode" cold) | $(med "$t" "$mode" warm)"
	done
	echo "$line | $(awk -v t="$t" '$1 == t { print $2 }' "$RA") |"
done

ratio() { # A B MODE STATE
	awk -v a="$(med "$1" "$3" "$4")" -v b="$(med "$2" "$3" "$4")" \
		'BEGIN { if (a == "-" || b == "-" || b == 0) printf "-"; else printf "%.2f", a / b }'
}
echo
echo "### Ratios (same run)"
echo
echo "| ratio | dd cold | dd warm | mmap cold | mmap warm | pread4 cold | pread4 warm |"
echo "|---|---|---|---|---|---|---|"
for pair in "udfs-exact zerofs-zero" "udfs-lossy zerofs-zero" \
	"udfs-exact zerofs-pass" "udfs-lossy zerofs-pass" \
	"udfs-exact sqfs-exact" "udfs-lossy sqfs-lossy" \
	"zerofs-zero source"; do
	set -- $pair
	case " $TARGETS " in *" $2 "*) ;; *) continue ;; esac
	line="| $1 / $2"
	for mode in $MODES; do
		line="$line | $(ratio "$1" "$2" "$mode" cold) | $(ratio "$1" "$2" "$mode" warm)"
	done
	echo "$line |"
done

echo
echo "### Goals (issue #3): cold >= 0.5x the FUSE ceiling (zerofs-zero) and"
echo "### faster than squashfuse; warm >= 0.9x the FUSE ceiling"
echo
for t in udfs-exact udfs-lossy; do
	sq=sqfs-${t#udfs-}
	for mode in $MODES; do
		res=""
		if [ "$root" = 1 ]; then
			c=$(ratio "$t" zerofs-zero "$mode" cold)
			res="cold/ceiling $c $(awk -v x="$c" 'BEGIN { print (x >= 0.5) ? "ok" : "MISS" }')"
			if [ "$squash" = 1 ]; then
				c=$(ratio "$t" "$sq" "$mode" cold)
				res="$res, cold/squashfuse $c $(awk -v x="$c" 'BEGIN { print (x > 1) ? "ok" : "MISS" }')"
			fi
			res="$res, "
		fi
		c=$(ratio "$t" zerofs-zero "$mode" warm)
		res="${res}warm/ceiling $c $(awk -v x="$c" 'BEGIN { print (x >= 0.9) ? "ok" : "MISS" }')"
		echo "- $t $mode: $res"
	done
done

echo
echo "Setup: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r);"
echo "file $size bytes; udfs -o cache=$cache; store packs ${store_mb:-?} MiB (exact + lossy);"
echo "add --lossless $(secs "$ta" "$tb") s, add s=0.97 $(secs "$tb" "$tc") s."
[ "$squash" = 1 ] && echo "squashfs images: exact $(du -m "$W/exact.sqfs" | cut -f1) MiB, lossy $(du -m "$W/lossy.sqfs" | cut -f1) MiB (zstd level $sqlevel, 128 KiB blocks)."
echo "udfs daemon peak RSS (VmHWM): $((hwm / 1024)) MiB."
[ -n "$reqs_udfs" ] && echo "Read request sizes, cold dd of 256 MiB (size:count): udfs $reqs_udfs; zerofs $reqs_zero."
if [ -s "${W}/perf.txt" ]; then
	echo
	echo "perf (udfs daemon, cold dd of udfs-exact), self time by symbol:"
	echo '```'
	cat "$W/perf.txt"
	echo '```'
	echo "with children:"
	echo '```'
	cat "$W/perf-children.txt"
	echo '```'
fi
exit 0
