#!/bin/sh
# SPDX-License-Identifier: MIT
# Faults during `udfs-compress add` and a damaged or foreign store:
#  - ENOSPC at several fill levels of a small tmpfs store (the store fills
#    while the pack is written, at the rename or in the catalog commit);
#  - SIGINT and SIGKILL at random moments of lossless and lossy adds
#    (FAULTS_SEED picks the moments; printed so a failure can be replayed);
#  - a read-only store (read-only bind mount): add and gc;
#  - EIO from the source: the source is read through a udfs mount whose
#    pack is damaged (needs /dev/fuse; skipped without);
#  - a catalog of a newer format version (PRAGMA user_version=99);
#  - a missing and a truncated base file.
# After each fault: the command failed with one line on stderr (or, for a
# kill after the commit, the model is whole), `udfs verify` passes, `udfs
# ls` is what it was, and after `udfs gc` tmp/ is empty and packs/ and
# bases/ hold only referenced entries. Tallies go to stdout ("faults: ...").
# Root is needed for the tmpfs and bind mounts; those parts skip without.
. "$(dirname "$0")/lib.sh"

MB=${FAULTS_MB:-24}
SEED=${FAULTS_SEED:-$(date +%s)}
echo "FAULTS_SEED=$SEED"
n_enospc=0 n_int=0 n_kill=0 n_ro=0 n_eio=0 n_version=0 n_base=0
S=$T/store
new_store "$S"
gen model "$T/base.safetensors" --mb "$MB" --seed 1
gen finetune "$T/base.safetensors" "$T/ft.safetensors" --seed 2
gen model "$T/small.safetensors" --mb 2 --seed 5
gen finetune "$T/small.safetensors" "$T/smallft.safetensors" --seed 6
must "add-base" "$UC" add-base -q "$S" base "$T/base.safetensors"
must "add keep" "$UC" add -q "$S" --base base --lossless \
	keep="$T/ft.safetensors"

# rand I N: a deterministic number in [0, N) from SEED and I.
rand() {
	awk -v s="$SEED" -v i="$1" -v n="$2" \
		'BEGIN { srand((s % 1000003) * 64 + i); print int(rand() * n) }'
}

# Millisecond clock (GNU date).
ms() { date +%s%3N; }

# sane STORE WHAT: the store is consistent and has no leftovers after gc.
sane() {
	ok "$2: verify" "$UDFS" verify -q "$1"
	_ic=$(sqlite3 "$1/catalog.db" 'PRAGMA integrity_check' 2>&1)
	[ "$_ic" = ok ] || fail "$2: integrity_check: $_ic"
	ok "$2: gc" "$UDFS" gc -q "$1"
	[ -z "$(ls -A "$1/tmp")" ] || fail "$2: tmp/ not empty after gc"
	_left=$(orphans "$1")
	[ -z "$_left" ] || fail "$2: unreferenced after gc: $_left"
}

ls_of() { "$UDFS" ls "$1" 2>&1 | sed 's/  */ /g'; }

# ---- ENOSPC: a store on a tmpfs too small for the new pack. The sizes
# leave 0.5 MiB to the whole pack of free room, so the add fails at
# different moments (pack data, fsync/rename, catalog commit).
if [ "$(id -u)" -eq 0 ] && mkdir "$T/full" &&
	mount -t tmpfs -o size=8m tmpfs "$T/full" 2>/dev/null; then
	on_exit "umount '$T/full'"
	umount "$T/full"
	i=0 fit=0
	# enospc_try KIB: one add on a fresh store on a tmpfs of KIB KiB.
	enospc_try() {
		i=$((i + 1))
		size=$1
		mount -t tmpfs -o "size=${size}k,mode=755" tmpfs "$T/full" ||
			die "tmpfs"
		FS=$T/full/store
		new_store "$FS"
		if ! ok "enospc $i: add-base" "$UC" add-base -q "$FS" small \
			"$T/small.safetensors"; then
			umount "$T/full"
			return
		fi
		ls_of "$FS" >"$T/ls.before"
		fingerprint "$FS" >"$T/fp.before"
		run "$UC" add -q "$FS" --base small ft="$T/smallft.safetensors" \
			--lossless
		if [ "$rc" -eq 0 ]; then
			echo "note: enospc $i: add fit in ${size} KiB"
			[ "$fit" -eq 0 ] && fit=$size
			"$UDFS" rm "$FS" ft >/dev/null 2>&1
		else
			n_enospc=$((n_enospc + 1))
			[ "$(wc -l <"$T/err")" -eq 1 ] ||
				fail "enospc $i: not one line: $(cat "$T/err")"
			[ "$rc" -lt 128 ] || fail "enospc $i: died of signal $rc"
			echo "enospc $i (${size} KiB): $(cat "$T/err")"
			fingerprint "$FS" >"$T/fp.after"
			cmp -s "$T/fp.before" "$T/fp.after" ||
				fail "enospc $i: store changed"
			ls_of "$FS" >"$T/ls.after"
			cmp -s "$T/ls.before" "$T/ls.after" ||
				fail "enospc $i: ls changed"
		fi
		sane "$FS" "enospc $i"
		# The lossy path too, where the room is smallest.
		if [ "$size" -le 2300 ]; then
			run "$UC" add -q "$FS" --base small \
				lo="$T/smallft.safetensors" --sparsity 0.5
			if [ "$rc" -ne 0 ]; then
				n_enospc=$((n_enospc + 1))
				[ "$(wc -l <"$T/err")" -eq 1 ] ||
					fail "enospc lossy $i: not one line"
			fi
			sane "$FS" "enospc lossy $i"
		fi
		umount "$T/full" || die "umount tmpfs"
	}
	# Coarse steps (base 2 MiB + catalog copies, the pack about 1 MiB),
	# then 8 KiB steps below the first size that fits, so that the
	# rename and the catalog commit meet a full disk too.
	for kib in 2400 2600 2800 3000 3200 3400 3600 3800; do
		enospc_try "$kib"
		[ "$fit" -ne 0 ] && break
	done
	if [ "$fit" -ne 0 ]; then
		for d in 96 80 64 48 40 32 24 16 8; do
			enospc_try $((fit - d))
		done
	fi
else
	echo "note: not root or tmpfs not mountable: ENOSPC skipped"
fi

# ---- SIGINT and SIGKILL at random moments.
t0=$(ms)
must "timed add" "$UC" add -q "$S" --base base --lossless \
	probe="$T/ft.safetensors"
dur_lossless=$(($(ms) - t0))
t0=$(ms)
must "timed lossy add" "$UC" add -q "$S" --base base probe2="$T/ft.safetensors"
dur_lossy=$(($(ms) - t0))
must "rm probe" "$UDFS" rm "$S" probe
must "rm probe2" "$UDFS" rm "$S" probe2
echo "add takes ${dur_lossless} ms lossless, ${dur_lossy} ms lossy"
ls_of "$S" >"$T/ls.ref"

i=0
for sig in INT KILL INT KILL INT KILL INT KILL; do
	i=$((i + 1))
	if [ $((i % 2)) -eq 1 ] || [ $((i % 4)) -eq 0 ]; then
		mode=--lossless dur=$dur_lossless
	else
		mode="--sparsity 0.9" dur=$dur_lossy
	fi
	delay=$(rand "$i" $((dur + dur / 5)))
	# shellcheck disable=SC2086 # $mode is two words for the lossy case
	"$UC" add -q "$S" --base base $mode x="$T/ft.safetensors" \
		>/dev/null 2>"$T/sig.err" &
	pid=$!
	sleep "$(awk -v d="$delay" 'BEGIN { printf "%.3f", d / 1000 }')"
	kill -"$sig" "$pid" 2>/dev/null
	{ wait "$pid"; } 2>/dev/null
	st=$?
	what="SIG$sig at ${delay} ms ($mode)"
	if [ "$st" -eq 0 ]; then
		echo "note: $what: the add had finished"
		ok "$what: verify the finished model" "$UDFS" verify -q "$S" x
		must "rm x" "$UDFS" rm "$S" x
	elif [ "$sig" = INT ]; then
		n_int=$((n_int + 1))
		[ "$(wc -l <"$T/sig.err")" -eq 1 ] ||
			fail "$what: not one line: $(cat "$T/sig.err")"
		echo "$what: $(cat "$T/sig.err")"
	else
		n_kill=$((n_kill + 1))
		# Killed after the commit point but before the pointer was
		# replaced, the add is committed and not yet published: the
		# next writer publishes it (udfs(5), ATOMICITY). gc is one.
		must "$what: gc finishes publishing" "$UDFS" gc -q "$S"
		if ls_of "$S" | grep -q '^x '; then
			echo "note: $what: committed before the kill"
			ok "$what: verify committed model" "$UDFS" verify -q "$S" x
			must "rm x" "$UDFS" rm "$S" x
		fi
	fi
	ls_of "$S" >"$T/ls.now"
	cmp -s "$T/ls.ref" "$T/ls.now" || fail "$what: ls changed"
	sane "$S" "$what"
done

# ---- A read-only store.
must "gc before read-only" "$UDFS" gc -q "$S"
mkdir "$T/ro"
if [ "$(id -u)" -eq 0 ] && mount --bind "$S" "$T/ro" 2>/dev/null; then
	on_exit "umount '$T/ro'"
	if mount -o remount,ro,bind "$T/ro" 2>/dev/null; then
		bad "read-only store: add" "$S" udfs-compress "$UC" add -q \
			"$T/ro" --base base --lossless y="$T/ft.safetensors" &&
			n_ro=$((n_ro + 1))
		bad "read-only store: lossy add" "$S" udfs-compress "$UC" add \
			-q "$T/ro" --base base y="$T/ft.safetensors" &&
			n_ro=$((n_ro + 1))
		mkdir -p "$S/tmp/leftover.pack.tmp" 2>/dev/null
		rmdir "$S/tmp/leftover.pack.tmp"
		echo junk >"$S/tmp/leftover"
		bad "read-only store: gc with work to do" "$S" udfs \
			"$UDFS" gc "$T/ro" && n_ro=$((n_ro + 1))
		rm -f "$S/tmp/leftover"
		ok "read-only store: verify" "$UDFS" verify -q "$T/ro"
	else
		echo "note: cannot remount read-only: skipped"
	fi
	umount "$T/ro"
else
	echo "note: not root or no bind mount: read-only store skipped"
fi

# ---- EIO from the source: read it through a mount with a damaged pack.
if [ -c /dev/fuse ] && command -v fusermount3 >/dev/null 2>&1; then
	D=$T/dmg
	cp -a "$S" "$D"
	pack=$(sqlite3 "$D/catalog.db" \
		"SELECT storage FROM models WHERE name='keep'")
	psize=$(stat -c %s "$D/$pack")
	# Damage bytes in the middle of the pack.
	printf 'XXXXXXXXXXXXXXXX' | dd of="$D/$pack" bs=1 \
		seek=$((psize / 2)) conv=notrunc 2>/dev/null
	mkdir "$T/mnt"
	"$UDFS" mount "$D" "$T/mnt" -f >"$T/daemon.log" 2>&1 &
	dpid=$!
	on_exit "fusermount3 -u '$T/mnt'; kill $dpid"
	k=0
	while ! [ -f "$T/mnt/keep/ft.safetensors" ] && [ $k -lt 100 ]; do
		sleep 0.1
		k=$((k + 1))
	done
	if [ -f "$T/mnt/keep/ft.safetensors" ]; then
		bad "EIO from the source" "$S" udfs-compress "$UC" add -q "$S" \
			--base base --lossless eio="$T/mnt/keep/ft.safetensors" &&
			n_eio=$((n_eio + 1))
		grep -qi 'input/output\|I/O' "$T/err" ||
			fail "EIO: message does not say I/O error: $(cat "$T/err")"
		bad "EIO from the source (lossy)" "$S" udfs-compress "$UC" add \
			-q "$S" --base base eio="$T/mnt/keep/ft.safetensors" &&
			n_eio=$((n_eio + 1))
		sane "$S" "after EIO"
	else
		fail "mount of the damaged store did not come up"
	fi
	fusermount3 -u "$T/mnt"
	wait "$dpid"
	rm -rf "$D"
else
	echo "note: no /dev/fuse: EIO from the source skipped"
fi

# ---- A catalog of a newer format version is refused by everyone.
V=$T/newer
cp -a "$S" "$V"
sqlite3 "$V/catalog.db" 'PRAGMA user_version=99' || die "set user_version"
# vrun VERB [ARGS...]: udfs VERB STORE ARGS must fail with one line that
# speaks of the version.
vrun() {
	_v=$1
	shift
	if bad "version 99: udfs $_v" "$V" udfs "$UDFS" "$_v" "$V" "$@"; then
		n_version=$((n_version + 1))
		grep -qi 'version' "$T/err" ||
			fail "version 99: udfs $_v: no word of the version: $(cat "$T/err")"
	fi
}
vrun ls
vrun verify
vrun info keep
vrun export keep "$T/vexp"
vrun gc
vrun rm keep
bad "version 99: add" "$V" udfs-compress "$UC" add -q "$V" --base base \
	--lossless z="$T/ft.safetensors" && n_version=$((n_version + 1))
mkdir "$T/vmnt"
run timeout 20 "$UDFS" mount "$V" "$T/vmnt"
if [ "$rc" -eq 0 ]; then
	fusermount3 -u "$T/vmnt"
	fail "version 99: mount succeeded"
else
	n_version=$((n_version + 1))
	grep -qi version "$T/err" ||
		fail "version 99: mount: no word of the version: $(cat "$T/err")"
fi
rm -rf "$V"

# ---- A missing and a truncated base file: clear errors, no crash.
for how in missing truncated; do
	M=$T/nobase
	cp -a "$S" "$M"
	bfile=$(find "$M/bases" -name '*.safetensors' | head -n 1)
	if [ $how = missing ]; then
		rm -f "$bfile"
	else
		truncate -s 1000 "$bfile"
	fi
	for cmd in "verify" "verify keep" "export keep $T/bexp" \
		"export base $T/bexp2" "info keep"; do
		verb=${cmd%% *}
		# shellcheck disable=SC2046 # the arguments after the verb
		run "$UDFS" "$verb" "$M" $(echo "$cmd" | cut -s -d' ' -f2-)
		if [ "$verb" = info ]; then
			# info needs no base bytes; it may work, but not crash.
			[ "$rc" -lt 128 ] || fail "$how base: udfs $cmd: signal"
			continue
		fi
		n_base=$((n_base + 1))
		if [ "$rc" -eq 0 ]; then
			fail "$how base: udfs $cmd succeeded"
		elif [ "$rc" -ge 128 ]; then
			fail "$how base: udfs $cmd died of signal $((rc - 128))"
		elif [ "$(wc -l <"$T/err")" -ne 1 ]; then
			fail "$how base: udfs $cmd: not one line: $(head -n 3 "$T/err")"
		else
			echo "$how base: udfs $cmd: $(cat "$T/err")"
		fi
		rm -rf "$T/bexp" "$T/bexp2"
	done
	rm -rf "$M"
done

# ---- A hostile catalog: rows that contradict each other or the store.
# Every reader (verify, export, info) must fail with one line or work,
# never die of a signal.
# A small store of its own keeps the ~30 x 5 runs short.
HS=$T/hs
new_store "$HS"
must "small base" "$UC" add-base -q "$HS" base "$T/small.safetensors"
must "lossy model for the catalog cases" "$UC" add -q "$HS" --base base \
	--sparsity 0.9 hl="$T/smallft.safetensors"
n_rows=0
# The tensor maps (udfs(5), files.tensor_map) are cut, extended, zeroed,
# flipped a byte at a time and pointed at the wrong files.
HL="(SELECT id FROM models WHERE name = 'hl')"
n_map=$(sqlite3 "$HS/catalog.db" "SELECT max(length(tensor_map)) FROM files
	WHERE model_id = $HL")
set --
i=2
while [ "$i" -le "$n_map" ]; do
	set -- "$@" "UPDATE files SET tensor_map = substr(tensor_map, 1, $i - 1) || (CASE WHEN substr(tensor_map, $i, 1) = X'FF' THEN X'00' ELSE X'FF' END) || substr(tensor_map, $i + 1) WHERE model_id = $HL AND length(tensor_map) >= $i"
	i=$((i + (n_map + 7) / 8))
done
for sql in \
	"UPDATE files SET tensor_map = substr(tensor_map, 1, length(tensor_map) - 1) WHERE model_id = $HL" \
	"UPDATE files SET tensor_map = tensor_map || X'00' WHERE model_id = $HL" \
	"UPDATE files SET tensor_map = X'02' || substr(tensor_map, 2) WHERE model_id = $HL" \
	"UPDATE files SET tensor_map = X'01' || zeroblob(length(tensor_map) - 1) WHERE model_id = $HL" \
	"UPDATE files SET tensor_map = zeroblob(20000000) WHERE model_id = $HL" \
	"UPDATE files SET tensor_map = NULL WHERE model_id = $HL" \
	"UPDATE files SET tensor_map = X'01' WHERE model_id = $HL" \
	"UPDATE files SET tensor_map = (SELECT tensor_map FROM files WHERE model_id <> $HL LIMIT 1) WHERE model_id = $HL" \
	"UPDATE files SET header = NULL, header_file = 999999 WHERE model_id = $HL" \
	"UPDATE files SET header = NULL, header_file = id WHERE model_id = $HL" \
	"UPDATE files SET header = NULL WHERE model_id <> $HL" \
	"UPDATE files SET size = 9223372036854775807" \
	"UPDATE files SET data_offset = 5" \
	"UPDATE files SET kind = 7" \
	"UPDATE models SET kind = 9 WHERE name = 'hl'" \
	"UPDATE models SET base_id = id WHERE name = 'hl'" \
	"UPDATE models SET base_id = 12345 WHERE name = 'hl'" \
	"DELETE FROM files WHERE model_id = (SELECT id FROM models WHERE name = 'base')" \
	"DROP TABLE tensors" \
	"$@"; do
	H=$T/hostile
	rm -rf "$H" "$T/hexp"
	cp -a "$HS" "$H"
	sqlite3 "$H/catalog.db" "$sql" 2>/dev/null || {
		fail "sqlite3: $sql"
		continue
	}
	for cmd in "verify" "verify hl" "export hl" "info hl" "ls"; do
		verb=${cmd%% *}
		arg=$(echo "$cmd" | cut -s -d' ' -f2-)
		if [ "$verb" = export ]; then
			run timeout 60 "$UDFS" export "$H" hl "$T/hexp"
		else
			# shellcheck disable=SC2086 # the optional model name
			run timeout 60 "$UDFS" "$verb" "$H" $arg
		fi
		n_rows=$((n_rows + 1))
		if [ "$rc" -ge 124 ]; then
			fail "catalog \"$sql\": udfs $cmd: $([ "$rc" -eq 124 ] && echo "hangs" || echo "died of signal $((rc - 128))")"
		elif [ "$rc" -ne 0 ] && [ "$(wc -l <"$T/err")" -ne 1 ]; then
			fail "catalog \"$sql\": udfs $cmd: not one line: $(head -n 3 "$T/err")"
		fi
		rm -rf "$T/hexp"
	done
done
rm -rf "$H" "$HS"

# ---- A FIFO (or any special file) left in tmp/ or packs/: gc removes it
# or refuses, and never blocks on it.
mkfifo "$S/tmp/fifo" "$S/packs/0123456789abcdef.pack" 2>/dev/null ||
	die "mkfifo"
run timeout 20 "$UDFS" gc "$S"
[ "$rc" -ne 124 ] || fail "udfs gc hangs on a FIFO in tmp/ (killed after 20 s)"
rm -f "$S/tmp/fifo" "$S/packs/0123456789abcdef.pack"

echo "faults: enospc=$n_enospc sigint=$n_int sigkill=$n_kill readonly=$n_ro" \
	"eio=$n_eio newer_version=$n_version base_missing_or_truncated=$n_base" \
	"hostile_catalog_runs=$n_rows"
ok "verify at the end" "$UDFS" verify "$S"
finish
