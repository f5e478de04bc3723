#!/bin/sh
# SPDX-License-Identifier: MIT
# What `udfs-compress add` says about each model (udfs-compress(1), OUTPUT):
# one summary line on stdout whose stored bytes and ratio are those of
# `udfs info --json` and whose lossy error is that of `udfs eval`, also
# under -q; no warning for a normal lossless or lossy add; one warning line
# each for a destructive sparsity, an unrelated base, and an F32 fine-tune
# against a BF16 base (then listed as lossless, not ultradelta); an F16
# fine-tune with outliers at +-65504 exports finite weights; the progress
# line (on a terminal) names the trace-norm phase of a group add, and
# add-base counts its bytes ("0/0 MB" before).
. "$(dirname "$0")/lib.sh"

S=$T/store
new_store "$S"
gen model "$T/base.safetensors" --mb 2 --seed 1
gen finetune "$T/base.safetensors" "$T/ft.safetensors" --seed 2
gen finetune "$T/base.safetensors" "$T/ft2.safetensors" --seed 3
gen model "$T/other.safetensors" --mb 2 --seed 7
must "add-base" "$UC" add-base -q "$S" base "$T/base.safetensors"

have_numpy=1
"$PY" -c 'import numpy' 2>/dev/null || {
	have_numpy=0
	echo "note: no numpy for $PY: dtype and F16 checks skipped"
}

# summary NAME [EVAL]: $T/out is exactly NAME's summary line; its bytes and
# ratio match `udfs info --json`, and with EVAL (a `udfs eval --json`
# file) its lossy error and cosine match the eval's to 3 decimals.
summary() {
	if [ "$(wc -l <"$T/out")" -ne 1 ] || ! grep -q "^$1: " "$T/out"; then
		fail "$1: not one summary line: $(cat "$T/out")"
		return 1
	fi
	"$UDFS" info "$S" "$1" --json >"$T/info.json" ||
		die "info $1"
	"$PY" - "$(cat "$T/out")" "$T/info.json" "${2:-}" <<'EOF' ||
import json, re, sys
line, info = sys.argv[1], json.load(open(sys.argv[2]))
m = re.match(r"^\S+: (\d+) bytes stored \([^)]*\) of (\d+), ratio "
             r"([0-9.]+)x, (lossless|lossy delta error ([0-9.]+) "
             r"\(cosine ([0-9.-]+)\)), [0-9.]+ s$", line)
if not m:
    sys.exit("bad summary line: " + line)
stored, source, ratio = int(m[1]), int(m[2]), float(m[3])
if stored != info["stored_bytes"] or source != info["source_bytes"]:
    sys.exit("bytes %d of %d, info says %d of %d" % (
        stored, source, info["stored_bytes"], info["source_bytes"]))
if abs(ratio - source / stored) > 0.006:
    sys.exit("ratio %g, bytes give %g" % (ratio, source / stored))
if sys.argv[3]:
    ev = json.load(open(sys.argv[3]))["lossy"]
    if m[5] is None:
        sys.exit("no lossy error in: " + line)
    if abs(float(m[5]) - ev["rel_err"]) > 0.0015 or \
       abs(float(m[6]) - ev["cosine"]) > 0.0015:
        sys.exit("error %s cosine %s, eval says %g %g" % (
            m[5], m[6], ev["rel_err"], ev["cosine"]))
EOF
		fail "$1: summary line"
}

# warned NAME PATTERN: exactly one warning line on stderr, about NAME,
# matching PATTERN.
warned() {
	if [ "$(wc -l <"$T/err")" -ne 1 ] ||
		! grep -q "^udfs-compress: warning: $1: .*$2" "$T/err"; then
		fail "$1: expected one warning /$2/, stderr: $(cat "$T/err")"
	fi
}

no_warning() {
	[ -s "$T/err" ] && fail "$1: unexpected stderr: $(cat "$T/err")"
}

# A normal lossless add and a normal lossy one: a summary, no warning.
must "add lossless" "$UC" add "$S" --base base --lossless ll="$T/ft.safetensors"
summary ll
no_warning ll
must "add s=0.5" "$UC" add "$S" --base base --sparsity 0.5 \
	l5="$T/ft.safetensors"
cp "$T/out" "$T/out.l5"
no_warning l5
"$UDFS" eval "$S" l5 --against "$T/ft.safetensors" --json >"$T/eval.json" ||
	die "eval l5"
cp "$T/out.l5" "$T/out"
summary l5 "$T/eval.json"
# -q silences the progress line only: the summary is the result.
must "add -q" "$UC" add -q "$S" --base base --lossless llq="$T/ft.safetensors"
summary llq
no_warning llq

# A destructive sparsity: error ~ sqrt(s / (1 - s)) ~ 10 at s = 0.99.
must "add s=0.99" "$UC" add "$S" --base base --sparsity 0.99 \
	d99="$T/ft.safetensors"
summary d99
warned d99 "likely destroyed"

# An unrelated model (same architecture, another seed) against the base.
must "add unrelated" "$UC" add "$S" --base base --lossless \
	un="$T/other.safetensors"
summary un
warned un "base \"base\" matches only"

if [ "$have_numpy" -eq 1 ]; then
	# The BF16 base converted to F32, exactly: an F32 fine-tune of it.
	"$PY" - "$T/base.safetensors" "$T/ft32.safetensors" <<'EOF' ||
import json, struct, sys
import numpy as np
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
    data = f.read()
h.pop("__metadata__", None)
out, blobs, off = {}, [], 0
for k, v in sorted(h.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    a, b = v["data_offsets"]
    x = np.frombuffer(data[a:b], dtype=np.uint16).astype(np.uint32) << 16
    blobs.append(x.tobytes())
    out[k] = {"dtype": "F32", "shape": v["shape"],
              "data_offsets": [off, off + len(blobs[-1])]}
    off += len(blobs[-1])
hdr = json.dumps(out).encode()
hdr += b" " * (-len(hdr) % 8)
with open(sys.argv[2], "wb") as f:
    f.write(struct.pack("<Q", len(hdr)) + hdr + b"".join(blobs))
EOF
		die "F32 fixture"
	must "add f32 to bf16" "$UC" add "$S" --base base f32="$T/ft32.safetensors"
	summary f32
	warned f32 "are F32 where base \"base\" has BF16: stored raw"
	grep -q ", lossless, " "$T/out" || fail "f32 summary: $(cat "$T/out")"
	"$UDFS" ls "$S" --json >"$T/ls.json" || die "ls"
	json_check "$T/ls.json" \
		'[m["method"] for m in j if m["name"] == "f32"] == ["lossless"]' ||
		fail "f32 (stored raw) not listed as lossless"

	# F16 with outliers at +-65504: min-max codes that cannot hold zero,
	# times a gain of ~33, once decoded to infinities.
	"$PY" - "$T/b16.safetensors" "$T/f16.safetensors" <<'EOF' ||
import json, struct, sys
import numpy as np
def save(path, a):
    b = a.tobytes()
    h = json.dumps({"w": {"dtype": "F16", "shape": list(a.shape),
                          "data_offsets": [0, len(b)]}}).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b)
rng = np.random.default_rng(1)
base = (rng.standard_normal((256, 256)) * 0.02).astype(np.float16)
ft = (base + rng.standard_normal((256, 256)) * 0.001).astype(np.float16)
ft[3, 5], ft[100, 7] = 65504, -65504
save(sys.argv[1], base)
save(sys.argv[2], ft)
EOF
		die "F16 fixture"
	must "add-base f16" "$UC" add-base -q "$S" b16 "$T/b16.safetensors"
	must "add f16 outliers" "$UC" add -q "$S" --base b16 \
		f16="$T/f16.safetensors"
	mkdir -p "$T/x16"
	must "export f16" "$UDFS" export "$S" f16 "$T/x16"
	"$PY" - "$T/x16/f16.safetensors" <<'EOF' || fail "f16: non-finite weights"
import json, struct, sys
import numpy as np
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    f.read(n)
    a = np.frombuffer(f.read(), dtype=np.float16)
bad = int((~np.isfinite(a)).sum())
if bad:
    sys.exit("%d of %d weights are not finite" % (bad, a.size))
EOF
fi

# The progress line, on a terminal: a group add names its trace-norm
# phase (UltraDelta's: the default add is adaptive), and add-base counts
# the bytes it copies.
if command -v script >/dev/null 2>&1; then
	script -qec "'$UC' add '$S' --base base --method ultradelta \
		g1='$T/ft.safetensors' \
		g2='$T/ft2.safetensors'" /dev/null >"$T/tty" 2>&1 ||
		fail "group add on a terminal: $(cat "$T/tty")"
	grep -q "trace norm  [0-9]*/[0-9]* tensors" "$T/tty" ||
		fail "no trace-norm progress: $(tr '\r' '\n' <"$T/tty")"
	grep -q "g1: [0-9]* bytes stored" "$T/tty" || fail "g1: no summary"
	grep -q "g2: [0-9]* bytes stored" "$T/tty" || fail "g2: no summary"
	script -qec "'$UC' add-base '$S' base2 '$T/base.safetensors'" \
		/dev/null >"$T/tty" 2>&1 || fail "add-base on a terminal"
	grep -q " [0-9]*/2 MB " "$T/tty" ||
		fail "add-base progress: $(tr '\r' '\n' <"$T/tty")"
else
	echo "note: no script(1): progress checks skipped"
fi

finish
