#!/bin/sh
# SPDX-License-Identifier: MIT
# Lists the N longest C functions (default 10) under the given folders
# (default src), longest first: "LINES file:line name". Uses universal
# ctags for the start and end line of each function definition.
#
# usage: tools/longfuncs.sh [-n N] [DIR...]
set -eu
n=10
if [ "${1:-}" = -n ]; then
	n=$2
	shift 2
fi
[ $# -gt 0 ] || set -- src
find "$@" -name '*.c' -o -name '*.h' | sort |
	xargs ctags --kinds-C=f --fields=+ne --output-format=u-ctags -f - |
	awk -F'\t' '{
		line = ""; end = "";
		for (i = 4; i <= NF; i++) {
			if ($i ~ /^line:/) line = substr($i, 6);
			if ($i ~ /^end:/) end = substr($i, 5);
		}
		if (line != "" && end != "")
			printf "%d %s:%s %s\n", end - line + 1, $2, line, $1;
	}' | sort -rn | head -n "$n"
