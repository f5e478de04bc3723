#!/bin/sh
# SPDX-License-Identifier: MIT
# `udfs-compress add --jobs N` stores the same bytes at any N: the lossy
# tensors are prepared in parallel slices, the group-wise mask is walked on
# a thread of its own while chunks are encoded, adaptive low-rank parts and
# a group's trace norms run on worker threads. For each method (and a
# group of two models), the packs' bytes and `udfs info --json` (per-tensor
# codes, bytes and errors) must not depend on --jobs; every model verifies.
. "$(dirname "$0")/lib.sh"

gen model "$T/base.safetensors" --mb 8 --seed 11
gen finetune "$T/base.safetensors" "$T/a.safetensors" --seed 12
gen finetune "$T/base.safetensors" "$T/b.safetensors" --seed 13

# packs DIR: the bytes of every pack of the store, in name order of their
# contents' hashes (pack names are random).
packs() {
	(cd "$1/packs" && find . -type f -exec sha256sum {} + | cut -c1-64 |
		sort)
}

# add_with JOBS TAG ARGS...: a new store with the base, then one add.
add_with() {
	_j=$1 _tag=$2
	shift 2
	new_store "$T/$_tag"
	must "add-base $_tag" "$UC" add-base -q "$T/$_tag" base \
		"$T/base.safetensors"
	must "add $_tag" "$UC" add -q "$T/$_tag" --base base --jobs "$_j" "$@"
}

# same_at_any_jobs CASE NAMES ARGS...: add with --jobs 1 and 3; NAMES is a
# space-separated list of the models the add creates.
same_at_any_jobs() {
	_case=$1 _names=$2
	shift 2
	add_with 1 "$_case-1" "$@" || return
	add_with 3 "$_case-3" "$@" || return
	[ "$(packs "$T/$_case-1")" = "$(packs "$T/$_case-3")" ] ||
		fail "$_case: pack bytes differ between --jobs 1 and 3"
	for m in $_names; do
		ok "info $_case $m" "$UDFS" info "$T/$_case-1" "$m" --json &&
			mv "$T/out" "$T/info1" &&
			ok "info $_case $m" "$UDFS" info "$T/$_case-3" "$m" --json &&
			{ cmp -s "$T/info1" "$T/out" ||
				fail "$_case: info --json of $m differs"; }
		ok "verify $_case $m" "$UDFS" verify "$T/$_case-3" "$m"
	done
}

same_at_any_jobs ultradelta "a" a="$T/a.safetensors" --sparsity 0.9
same_at_any_jobs seeded "a" a="$T/a.safetensors" --sparsity 0.9 \
	--mask seeded
same_at_any_jobs dare "a" a="$T/a.safetensors" --method dare --sparsity 0.8
same_at_any_jobs magnitude "a" a="$T/a.safetensors" --method magnitude \
	--sparsity 0.8
same_at_any_jobs bitdelta "a" a="$T/a.safetensors" --method bitdelta
same_at_any_jobs group "a b" a="$T/a.safetensors" b="$T/b.safetensors" \
	--sparsity 0.9
same_at_any_jobs adaptive "a" a="$T/a.safetensors"
same_at_any_jobs adaptive-group "a b" a="$T/a.safetensors" \
	b="$T/b.safetensors" --ratio 12
finish
