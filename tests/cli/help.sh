#!/bin/sh
# SPDX-License-Identifier: MIT
# --help, --version and the man pages: `udfs --help` and `udfs-compress
# --help` exit 0 on stdout; every long option of `udfs-compress --help`,
# every verb of `udfs --help` and every -o option of `udfs mount --help`
# is documented in its man page; every option in a man page's OPTIONS
# section (and udfs.1's MOUNT section) is printed by the --help of its
# program ("options in --help and in the man page agree"); the man pages
# render without groff warnings.
. "$(dirname "$0")/lib.sh"

MAN=$UDFS_TOP/man

# Man source to plain text: \- to -, font escapes and \(xx dropped.
plain() {
	sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\(..//g' \
		-e 's/\\&//g' -e 's/\\e/\\/g' "$1"
}

# Lines of section SECTION of a man source, as plain text, tags only
# (the line after each .TP).
section_tags() {
	plain "$1" | awk -v sec="$2" '
		/^\.SH / { on = ($0 == ".SH " sec || $0 == ".SH \"" sec "\"") }
		on && tp { print; tp = 0; next }
		on && /^\.TP/ { tp = 1 }'
}

# Long and short options (and "-o name") in text on stdin, one per line.
options_in() {
	sed -e 's/^\.[A-Z]* //' -e 's/"//g' >"$T/opt.in"
	{
		# "-o name" tags; "other -o options ..." is prose.
		grep -o -e '-o [a-z_][a-z_]*=\{0,1\}' "$T/opt.in" |
			grep -v -x -e '-o options'
		sed 's/-o [a-z_]*//g' "$T/opt.in" | grep -o -e '--[a-z][a-z-]*'
		sed 's/-o [a-z_]*//g' "$T/opt.in" |
			grep -o -e '\(^\|[ ,[]\)-[a-zA-Z]\>' | sed 's/^[ ,[]//'
	} | sort -u
}

# has OPTION FILE: FILE mentions OPTION as a whole word.
has() {
	case "$1" in
	*=) grep -q -F -e "$1" "$2" ;;
	*) grep -q -e "\\(^\\|[^a-zA-Z0-9_-]\\)$1\\([^a-zA-Z0-9_-]\\|\$\\)" "$2" ;;
	esac
}

for p in udfs udfs-compress; do
	bin=$BUILD/$p
	if ok "$p --help" "$bin" --help; then
		[ -s "$T/out" ] || fail "$p --help printed nothing on stdout"
		[ -s "$T/err" ] && fail "$p --help wrote to stderr"
		grep -q "^usage: $p" "$T/out" || fail "$p --help: no usage line"
	fi
	ok "$p -h" "$bin" -h
	if ok "$p --version" "$bin" --version; then
		grep -q "^$p [0-9]" "$T/out" ||
			fail "$p --version: $(cat "$T/out")"
	fi
done
"$UDFS" --help >"$T/udfs.help"
"$UC" --help >"$T/uc.help"
"$UDFS" mount --help >"$T/mount.help" 2>&1 ||
	fail "udfs mount --help exits non-zero"
: >"$T/verbs.help"
for v in ls info verify export eval rm gc status; do
	ok "udfs $v --help" "$UDFS" $v --help &&
		cat "$T/out" >>"$T/verbs.help"
	grep -q "udfs $v" "$T/out" || fail "udfs $v --help: $(cat "$T/out")"
done
cat "$T/udfs.help" "$T/verbs.help" >"$T/udfs.all.help"

# The man pages render cleanly.
for m in udfs.1 udfs-compress.1 udfs.5; do
	if [ ! -f "$MAN/$m" ]; then
		fail "man/$m is missing"
		continue
	fi
	if command -v groff >/dev/null 2>&1; then
		w=$(groff -man -Tutf8 -ww "$MAN/$m" 2>&1 >/dev/null)
		[ -z "$w" ] || fail "groff warnings for $m: $w"
	fi
done
plain "$MAN/udfs-compress.1" >"$T/uc.man"
plain "$MAN/udfs.1" >"$T/udfs.man"

# --help -> man page.
options_in <"$T/uc.help" >"$T/uc.opts"
[ "$(wc -l <"$T/uc.opts")" -ge 15 ] ||
	fail "few options found in udfs-compress --help: $(cat "$T/uc.opts")"
while read -r o; do
	has "$o" "$T/uc.man" || fail "udfs-compress --help has $o, the man page not"
done <"$T/uc.opts"
for v in $(sed -n 's/^ *\(usage:\)\{0,1\} *udfs \([a-z]*\).*/\2/p' \
	"$T/udfs.help"); do
	grep -q "^\.B udfs $v\$" "$MAN/udfs.1" ||
		fail "verb $v is not in udfs.1's SYNOPSIS"
	grep -q "^\.BI $v " "$MAN/udfs.1" ||
		fail "verb $v has no entry under COMMANDS in udfs.1"
done
for v in mount ls info verify export eval rm gc status; do
	grep -q "udfs $v" "$T/udfs.help" || fail "udfs --help lacks the verb $v"
done
# Each verb's options: its --help synopsis and its udfs.1 SYNOPSIS entry
# name the same ones (the parser takes exactly those, see badinput.sh).
for v in ls info verify export eval rm gc status; do
	"$UDFS" $v --help | sed -n 's/^usage: //p' | options_in |
		grep -v -x -e -q -e -h >"$T/verb.help"
	plain "$MAN/udfs.1" | awk -v v="$v" '
		/^\.SH / { on = ($0 == ".SH SYNOPSIS"); p = 0; next }
		on && $0 == ".B udfs " v { p = 1; next }
		p && /^\.br/ { p = 0 }
		p' | options_in >"$T/verb.man"
	cmp -s "$T/verb.help" "$T/verb.man" ||
		fail "udfs $v: --help has options '$(echo $(cat "$T/verb.help"))', udfs.1 SYNOPSIS '$(echo $(cat "$T/verb.man"))'"
done
options_in <"$T/udfs.help" >"$T/udfs.opts"
while read -r o; do
	has "$o" "$T/udfs.man" || fail "udfs --help has $o, udfs.1 not"
done <"$T/udfs.opts"
options_in <"$T/verbs.help" >"$T/verbs.opts"
while read -r o; do
	has "$o" "$T/udfs.man" || fail "a udfs verb's --help has $o, udfs.1 not"
done <"$T/verbs.opts"
options_in <"$T/mount.help" >"$T/mount.opts"
while read -r o; do
	has "$o" "$T/udfs.man" || fail "udfs mount --help has $o, udfs.1 not"
done <"$T/mount.opts"

# Man page OPTIONS -> --help.
section_tags "$MAN/udfs-compress.1" OPTIONS | options_in >"$T/uc.manopts"
[ -s "$T/uc.manopts" ] || fail "no options found in udfs-compress.1 OPTIONS"
while read -r o; do
	has "$o" "$T/uc.help" ||
		fail "udfs-compress.1 documents $o, udfs-compress --help not"
done <"$T/uc.manopts"
section_tags "$MAN/udfs.1" OPTIONS | options_in >"$T/udfs.manopts"
[ -s "$T/udfs.manopts" ] || fail "no options found in udfs.1 OPTIONS"
while read -r o; do
	has "$o" "$T/udfs.all.help" ||
		fail "udfs.1 OPTIONS documents $o, udfs --help (and the verbs') not"
done <"$T/udfs.manopts"
section_tags "$MAN/udfs.1" MOUNT | options_in >"$T/mount.manopts"
[ -s "$T/mount.manopts" ] || fail "no options found in udfs.1 MOUNT"
while read -r o; do
	has "$o" "$T/mount.help" ||
		fail "udfs.1 MOUNT documents $o, udfs mount --help not"
done <"$T/mount.manopts"

# udfs.5 names every table and column of the catalog schema.
S=$T/store
new_store "$S"
plain "$MAN/udfs.5" >"$T/udfs5.man"
for tbl in $(sqlite3 "$S/catalog.db" \
	"SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"); do
	grep -q "^\.SS $tbl\\>" "$T/udfs5.man" ||
		fail "udfs.5 has no section for table $tbl"
	for col in $(sqlite3 "$S/catalog.db" "SELECT name FROM pragma_table_info('$tbl')"); do
		has "$col" "$T/udfs5.man" ||
			fail "udfs.5 does not mention column $tbl.$col"
	done
done
v=$(sqlite3 "$S/catalog.db" 'PRAGMA user_version')
grep -q "user_version" "$T/udfs5.man" || fail "udfs.5 lacks user_version"
grep -A3 "user_version" "$T/udfs5.man" | grep -q "^\.BR* $v\\>" ||
	fail "udfs.5 does not give format version $v"

[ -n "${SHOW_OPTS:-}" ] && head -n 100 "$T"/*.opts "$T"/*.manopts
finish
