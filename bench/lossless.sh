#!/bin/sh
# SPDX-License-Identifier: MIT
# Lossless benchmark: `udfs-compress add --lossless` against zstd on the
# same fine-tuned file, measured in one run on one machine.
#
#   sh bench/lossless.sh [--mb N] [--runs N] [--slow-mb N] [--no-real]
#                        [--no-slow]
#
# Pairs: the real checkpoints of ../shared/data (stories260K BF16 and F32,
# lives and pi fine-tunes; toylora ft-a and ft-b, F32) when present, and a
# generated BF16 base/fine-tune pair of N MiB (default 1024). Methods:
#   udfs       add --lossless (XOR byte planes + zstd -3, all cores); bytes
#              are the model's stored_bytes (pack + catalog rows), the pack
#              file size is shown too; decode = `udfs export`
#   zstd-3     zstd -3 -T0 of the fine-tuned file
#   zstd-19L   zstd -19 --long -T0 of the fine-tuned file
#   patch-3    zstd -3 --patch-from=BASE --long=W --single-thread
#   patch-19   zstd -19 --patch-from=BASE --long=W --single-thread
#              (W: the window log covering base + fine-tune, up to 31;
#              single-thread is zstd's advice for the best patch ratio)
# MB/s is source bytes (10^6) per wall second, warm page cache; the
# generated pair's timings are medians of --runs runs (default 3) for the
# fast methods and one run for the level-19 ones. zstd -19 runs at well
# under 1 MB/s on weights here (hours for 1 GiB), so the level-19 rows of
# the generated pair are measured on a generated pair of --slow-mb MiB
# (default 32) with the same generator and statistics, as their note says.
# "x udfs" is a method's bytes over udfs's bytes (above 1: udfs is
# smaller); ratios are size-independent for generated pairs.
set -u

mb=1024 runs=3 real=1 slow=1 slow_mb=32
while [ $# -gt 0 ]; do
	case "$1" in
	--mb) mb=$2; shift ;;
	--runs) runs=$2; shift ;;
	--slow-mb) slow_mb=$2; shift ;;
	--no-real) real=0 ;;
	--no-slow) slow=0 ;;
	-h|--help) sed -n '3,25p' "$0"; exit 0 ;;
	*) echo "lossless.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done

top=$(cd "$(dirname "$0")/.." && pwd)
: "${BUILD:=$top/build}"
BUILD=$(cd "$BUILD" && pwd) || exit 1
UDFS=$BUILD/udfs UC=$BUILD/udfs-compress GEN=$BUILD/tests/gen_model
for b in "$UDFS" "$UC" "$GEN"; do
	[ -x "$b" ] || { echo "lossless.sh: $b not built (make tests)" >&2; exit 1; }
done
command -v zstd >/dev/null || { echo "lossless.sh: zstd not found" >&2; exit 1; }
DATA=${UDFS_SHARED:-$top/../shared}/data

W=$(mktemp -d "${TMPDIR:-/tmp}/udfs-bench-lossless.XXXXXX") || exit 1
trap 'rm -rf "$W"' EXIT
trap 'rm -rf "$W"; exit 130' INT TERM
ROWS=$W/rows

now() { date +%s.%N; }
# secs START END
secs() { echo "$1 $2" | awk '{ printf "%.3f", $2 - $1 }'; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
size() { wc -c <"$1" | tr -d ' '; }

# timed N CMD...: run CMD N times; prints the median wall seconds.
timed() {
	_n=$1
	shift
	_all=""
	_i=0
	while [ $_i -lt "$_n" ]; do
		_t0=$(now)
		"$@" || { echo "lossless.sh: failed: $*" >&2; exit 1; }
		_t1=$(now)
		_all="$_all $(secs "$_t0" "$_t1")"
		_i=$((_i + 1))
	done
	echo "$_all" | median
}

# row PAIR METHOD BYTES EXTRA SRCBYTES ENC_S DEC_S NOTE
row() {
	echo "$1|$2|$3|$4|$5|$6|$7|$8" >>"$ROWS"
	echo "   $2: $3 bytes, enc $6 s, dec $7 s $4" >&2
}

# wlog N: the zstd window log that covers N bytes (10..31).
wlog() {
	awk -v n="$1" 'BEGIN { w = 10; while (2 ^ w < n && w < 31) w++; print w }'
}

# bench LABEL BASE FT N N_SLOW [SLOW_BASE SLOW_FT]: the level-19 peers run
# on SLOW_BASE/SLOW_FT when given.
bench() {
	label=$1 base=$2 ft=$3 n=$4 nslow=$5 sbase=${6:-} sft=${7:-}
	src=$(size "$ft")
	echo "== $label: $(basename "$ft"), $src bytes" >&2
	S=$W/store
	rm -rf "$S" "$W/out"
	"$UC" init "$S" || exit 1
	"$UC" add-base -q "$S" base "$base" || exit 1

	# udfs: each run adds to a fresh name, then removes it.
	_all="" _dall="" _i=0
	while [ $_i -lt "$n" ]; do
		_t0=$(now)
		"$UC" add -q "$S" --base base --lossless "ft$_i=$ft" || exit 1
		_t1=$(now)
		"$UDFS" export "$S" "ft$_i" "$W/out" || exit 1
		_t2=$(now)
		cmp -s "$ft" "$W/out/$(basename "$ft")" ||
			{ echo "lossless.sh: export differs" >&2; exit 1; }
		_all="$_all $(secs "$_t0" "$_t1")"
		_dall="$_dall $(secs "$_t1" "$_t2")"
		if [ $((_i + 1)) -lt "$n" ]; then
			"$UDFS" rm "$S" "ft$_i"
		fi
		rm -rf "$W/out"
		_i=$((_i + 1))
	done
	last=ft$((n - 1))
	stored=$("$UDFS" info --json "$S" "$last" |
		/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["stored_bytes"])')
	pack=$(sqlite3 "$S/catalog.db" "SELECT storage FROM models WHERE name='$last'")
	row "$label" udfs "$stored" "pack $(size "$S/$pack")" "$src" \
		"$(echo "$_all" | median)" "$(echo "$_dall" | median)" ""
	rm -rf "$S"

	# zstd peers: output size, compression and decompression time.
	z=$W/z.zst
	peer() { # NAME RUNS ZSTD-COMPRESS-ARGS... -- ZSTD-DECOMPRESS-ARGS...
		_name=$1 _r=$2 _note=""
		shift 2
		_c="" _d=""
		while [ "$1" != -- ]; do _c="$_c $1"; shift; done
		shift
		_d="$*"
		# shellcheck disable=SC2086
		_ct=$(timed "$_r" zstd -q -q -f $_c "$ft" -o "$z" 2>/dev/null)
		# shellcheck disable=SC2086
		_dt=$(timed "$_r" zstd -q -f -d $_d "$z" -o "$W/z.out")
		cmp -s "$ft" "$W/z.out" ||
			{ echo "lossless.sh: $_name round trip differs" >&2; exit 1; }
		if [ "$ft" != "$src_ft" ]; then
			# Scale to the pair's size: same generator, same ratio.
			_note="on the $(($(size "$ft") >> 20)) MiB pair"
			_zs=$(awk -v z="$(size "$z")" -v a="$(size "$ft")" -v b="$src" \
				'BEGIN { printf "%d", z * b / a }')
			_ct=$(awk -v t="$_ct" -v a="$(size "$ft")" -v b="$src" \
				'BEGIN { printf "%.3f", t * b / a }')
			_dt=$(awk -v t="$_dt" -v a="$(size "$ft")" -v b="$src" \
				'BEGIN { printf "%.3f", t * b / a }')
		else
			_zs=$(size "$z")
		fi
		row "$label" "$_name" "$_zs" "$_note" "$src" "$_ct" "$_dt" ""
		rm -f "$z" "$W/z.out"
	}
	# patch-from: a window over base and fine-tune together, and the
	# single-thread mode zstd recommends for the best patch ratio.
	wl=$(wlog $(($(size "$base") + src)))
	mem=$(( (1 << wl) >> 20 ))
	[ $mem -ge 128 ] || mem=128
	src_ft=$ft
	peer zstd-3 "$n" -3 -T0 --
	peer patch-3 "$n" -3 --single-thread --long=$wl --patch-from="$base" \
		-- --long=$wl --memory=${mem}MB --patch-from="$base"
	if [ "$slow" -eq 1 ] && [ -n "$sft" ]; then
		base=$sbase ft=$sft
		wl=$(wlog $(($(size "$base") + $(size "$ft"))))
		mem=$(( (1 << wl) >> 20 ))
		[ $mem -ge 128 ] || mem=128
	fi
	if [ "$slow" -eq 1 ]; then
		peer zstd-19L "$nslow" -19 -T0 --long -- --long
		peer patch-19 "$nslow" -19 --single-thread --long=$wl \
			--patch-from="$base" -- --long=$wl --memory=${mem}MB \
			--patch-from="$base"
	fi
}

start=$(now)
if [ "$real" -eq 1 ] && [ -d "$DATA/stories260K" ]; then
	for dt in bf16 f32; do
		for f in lives pi; do
			bench "stories260K $dt $f" \
				"$DATA/stories260K/base-$dt/model.safetensors" \
				"$DATA/stories260K/ft-$f-$dt/model.safetensors" 3 1
		done
	done
	for f in a b; do
		bench "toylora f32 ft-$f" "$DATA/toylora/base/model.safetensors" \
			"$DATA/toylora/ft-$f/model.safetensors" 3 1
	done
elif [ "$real" -eq 1 ]; then
	echo "note: $DATA not found; real pairs skipped" >&2
fi
"$GEN" model "$W/base.safetensors" --dtype bf16 --mb "$mb" --seed 1 >&2 ||
	exit 1
"$GEN" finetune "$W/base.safetensors" "$W/model.safetensors" --seed 2 >&2 ||
	exit 1
if [ "$slow" -eq 1 ] && [ "$slow_mb" -lt "$mb" ]; then
	mkdir "$W/small"
	"$GEN" model "$W/small/base.safetensors" --dtype bf16 --mb "$slow_mb" \
		--seed 1 >&2 || exit 1
	"$GEN" finetune "$W/small/base.safetensors" "$W/small/model.safetensors" \
		--seed 2 >&2 || exit 1
	bench "generated bf16 ${mb}MiB" "$W/base.safetensors" \
		"$W/model.safetensors" "$runs" 1 "$W/small/base.safetensors" \
		"$W/small/model.safetensors"
else
	bench "generated bf16 ${mb}MiB" "$W/base.safetensors" \
		"$W/model.safetensors" "$runs" 1
fi

# The table.
echo
echo "lossless benchmark: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(zstd -V | sed 's/.*v\([0-9.]*\).*/zstd \1/'), build $BUILD"
awk -F'|' '
	$2 == "udfs" { ub[$1] = $3 }
	{ r[NR] = $0 }
	END {
		printf "%-26s %-9s %13s %7s %7s %9s %9s  %s\n", "pair", "method",
		    "bytes", "ratio", "x udfs", "enc MB/s", "dec MB/s", "note"
		for (i = 1; i <= NR; i++) {
			split(r[i], f, "|")
			if (i > 1 && f[1] != prev)
				print ""
			prev = f[1]
			printf "%-26s %-9s %13d %6.3fx %7.3f %9.1f %9.1f  %s\n",
			    f[1], f[2], f[3], f[5] / f[3], f[3] / ub[f[1]],
			    (f[6] > 0 ? f[5] / 1e6 / f[6] : 0),
			    (f[7] > 0 ? f[5] / 1e6 / f[7] : 0), f[4]
		}
	}' "$ROWS"
echo
echo "bytes: udfs = stored_bytes of udfs info (pack + catalog rows; pack size in note);"
echo "zstd = output file size. x udfs = bytes / udfs bytes. enc = add / zstd,"
echo "dec = udfs export / zstd -d, MB/s of source bytes, wall time, warm cache;"
echo "generated pair: median of $runs runs (level-19 rows: 1 run, on a"
echo "${slow_mb} MiB generated pair when the note says so, bytes and seconds"
echo "scaled to the full size); real pairs: median of 3 (level 19: 1 run)."
echo "udfs dec includes writing and fsync-ing the exported file."
echo "total time: $(secs "$start" "$(now)") s"
