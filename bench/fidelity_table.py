#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Lossy fidelity benchmark of udfs (issue #4), driven by bench/fidelity.sh.

Compresses the real checkpoints of shared/data with udfs-compress, exports
the reconstructed models with `udfs export`, scores them with the shared
eval scripts (stories.py ppl, mlp.py agree) and prints markdown tables:

  a. faithfulness: stories260K BF16, s in {0.5, 0.8, 0.9} x mask, N seeds,
     our CE next to the ud_ref.py reference ranges (flagged when outside
     the range +- 0.1), real-byte ratios and the paper's ratio accounting;
  b. fidelity sweep s in {0.9 .. 0.99}, explicit mask: stories260K BF16 and
     F32, toylora (agreement with the fine-tune);
  c. explicit vs seeded masks at equal s, and the four methods at equal
     real bytes (--ratio R; bitdelta at its own ratio);
  d. a group add of two fine-tunes: the trace-norm factor gamma;
  e. compression speed of a generated ~512 MiB BF16 fine-tune;
  f. gain kept (toylora: agreement) against the real model ratio for every
     method, both families, F32 and BF16, N seeds: the adaptive method's
     curve beside the others', and who wins at equal real bytes;
  g. the codes the adaptive method chose, per tensor type.

Every model is compressed alone (one NAME=SRC per add, gamma = 1) except in
d. Every run uses its own scratch store, so runs go in parallel (-j).
"""
import argparse
import collections
import concurrent.futures as cf
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

PY = "/usr/bin/python3"

# ud_ref.py reference: (s, mask) -> {text: (mean, lo, hi)}, 4 seeds, BF16.
REF = {
    (0.5, "explicit"): {"lives": (1.87, 1.85, 1.88), "pi": (1.68, 1.68, 1.68)},
    (0.5, "seeded"): {"lives": (1.89, 1.89, 1.90), "pi": (1.68, 1.67, 1.69)},
    (0.8, "explicit"): {"lives": (2.22, 2.15, 2.25), "pi": (1.89, 1.85, 1.91)},
    (0.8, "seeded"): {"lives": (2.22, 2.15, 2.30), "pi": (1.88, 1.86, 1.90)},
    (0.9, "explicit"): {"lives": (2.84, 2.76, 2.98), "pi": (2.34, 2.23, 2.43)},
    (0.9, "seeded"): {"lives": (2.90, 2.77, 3.05), "pi": (2.38, 2.33, 2.47)},
}
TOL = 0.1


def golomb_bits(s):
    """Expected Golomb-Rice bits per kept element (ud_ref.py golomb_bits)."""
    p = 1 - s
    m = max(1, round(-math.log(2) / math.log(1 - p))) if 0 < p < 1 else 1
    k = max(0, int(math.log2(m)))
    q = (1 - p) ** (1 << k)
    return 1 / (1 - q) + k


def paper_ratio(s, bits, explicit):
    return 16 / ((1 - s) * (bits + (golomb_bits(s) if explicit else 0)))


class Bench:
    def __init__(self, a):
        self.a = a
        self.udfs = os.path.join(a.build, "udfs")
        self.uc = os.path.join(a.build, "udfs-compress")
        self.gen = os.path.join(a.build, "tests", "gen_model")
        self.data = os.path.join(a.shared, "data")
        self.eval = os.path.join(a.shared, "eval")
        self.tmp = tempfile.mkdtemp(prefix="udfs-fidelity.", dir=a.tmp)
        self.out = []

    # ------------------------------------------------------------ helpers
    def sh(self, *cmd, cwd=None):
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd),
                               r.returncode, r.stderr.strip()[-500:]))
        return r.stdout

    def scratch(self):
        return tempfile.mkdtemp(prefix="r", dir=self.tmp)

    def model(self, rel):
        return os.path.join(self.data, rel)

    def score(self, kind, path, ref=None):
        """CE (stories, kind = lives|pi) or (agree, kl) vs ref (toylora)."""
        if kind == "mlp":
            out = self.sh(PY, os.path.join(self.eval, "mlp.py"), "agree",
                          "--ref", ref, "--model", path)
            w = out.strip().splitlines()[-1].split()
            return float(w[1]), float(w[3])
        text = {"lives": "text/lives.jsonl", "pi": "text/pi_thoughts.txt"}[kind]
        out = self.sh(PY, os.path.join(self.eval, "stories.py"), "ppl",
                      "--model", path, "--text", self.model(text), "--tok",
                      self.model("stories260K/tok512.bin"), "--threads", "1")
        return float(out.strip().splitlines()[-1].split()[1])

    def compress(self, base, fts, opts, kind, ref=None):
        """One store, add base, add fts {name: src} in one add with opts,
        export each and score it. Returns {name: (info, score)}."""
        d = self.scratch()
        st = os.path.join(d, "st")
        self.sh(self.uc, "-q", "init", st)
        self.sh(self.uc, "-q", "add-base", st, "base", self.model(base))
        pairs = ["%s=%s" % (n, self.model(s)) for n, s in fts.items()]
        self.sh(self.uc, "-q", "add", st, "--base", "base", *pairs, *opts)
        res = {}
        for n, src in fts.items():
            info = json.loads(self.sh(self.udfs, "info", st, n, "--json"))
            ex = os.path.join(d, "x-" + n)
            self.sh(self.udfs, "export", st, n, ex)
            m = os.path.join(ex, "model.safetensors")
            k = kind[n] if isinstance(kind, dict) else kind
            r = ref[n] if isinstance(ref, dict) else ref
            res[n] = (info, self.score(k, m, r))
        shutil.rmtree(d, ignore_errors=True)
        return res

    def pmap(self, fn, items):
        with cf.ThreadPoolExecutor(self.a.jobs) as ex:
            return list(ex.map(fn, items))

    def emit(self, line=""):
        print(line, flush=True)
        self.out.append(line)

    def table(self, head, rows):
        self.emit("| " + " | ".join(head) + " |")
        self.emit("|" + "|".join("---" for _ in head) + "|")
        for r in rows:
            self.emit("| " + " | ".join(str(c) for c in r) + " |")
        self.emit()

    @staticmethod
    def rng(xs, fmt="%.3f"):
        """mean (min-max)."""
        if len(xs) == 1:
            return fmt % xs[0]
        return (fmt + " (" + fmt + "–" + fmt + ")") % (
            statistics.mean(xs), min(xs), max(xs))

    @staticmethod
    def lossy_gain(info):
        g = [t["gain"] for f in info["files"] for t in f.get("tensors", [])
             if "gain" in t and t.get("encoding") == info["method"]]
        return statistics.mean(g) if g else float("nan")

    # ------------------------------------------------------------ tables
    def refs(self):
        """CE of bases and fine-tunes, agreement of the toylora base."""
        jobs = [("stories260K/base-bf16", "lives"), ("stories260K/base-bf16", "pi"),
                ("stories260K/ft-lives-bf16", "lives"), ("stories260K/ft-pi-bf16", "pi"),
                ("stories260K/base-f32", "lives"), ("stories260K/base-f32", "pi"),
                ("stories260K/ft-lives-f32", "lives"), ("stories260K/ft-pi-f32", "pi")]
        ce = self.pmap(lambda j: self.score(j[1], self.model(j[0] + "/model.safetensors")), jobs)
        self.ce = {j: c for j, c in zip(jobs, ce)}
        self.agree_base = {}
        for ft in ("ft-a", "ft-b"):
            self.agree_base[ft] = self.score(
                "mlp", self.model("toylora/base/model.safetensors"),
                self.model("toylora/%s/model.safetensors" % ft))
        self.emit("Reference points (measured now): CE base-bf16 lives %.4f, "
                  "pi %.4f; ft-lives-bf16 %.4f, ft-pi-bf16 %.4f; base-f32 "
                  "lives %.4f, pi %.4f; ft-lives-f32 %.4f, ft-pi-f32 %.4f; "
                  "toylora base vs ft-a agree %.4f, vs ft-b %.4f." % (
                      *ce, self.agree_base["ft-a"][0], self.agree_base["ft-b"][0]))
        self.emit()

    def table_a(self):
        a = self.a
        jobs = [(s, m, ft, seed) for s in (0.5, 0.8, 0.9)
                for m in ("explicit", "seeded") for ft in ("lives", "pi")
                for seed in range(a.seeds)]

        def run(j):
            s, m, ft, seed = j
            r = self.compress("stories260K/base-bf16",
                              {"x": "stories260K/ft-%s-bf16" % ft},
                              ["--sparsity", str(s), "--bits", "4", "--step",
                               "0.01", "--mask", m, "--seed", str(seed)], ft)
            return r["x"]

        res = dict(zip(jobs, self.pmap(run, jobs)))
        self.a_res = res
        self.emit("### a. Faithfulness vs ud_ref.py (stories260K BF16, b=4, "
                  "step=0.01, every matrix >= 1024 elements lossy, each model "
                  "alone, seeds 0..%d)" % (a.seeds - 1))
        self.emit()
        rows, flags = [], 0
        for s in (0.5, 0.8, 0.9):
            for m in ("explicit", "seeded"):
                for ft in ("lives", "pi"):
                    rs = [res[(s, m, ft, k)] for k in range(a.seeds)]
                    ce = [r[1] for r in rs]
                    ref = REF[(s, m)][ft]
                    worse = max(ce) > ref[2] + TOL
                    better = min(ce) < ref[1] - TOL
                    flags += worse or better
                    sp = statistics.mean(r[0]["sparsity"] for r in rs)
                    rows.append([
                        s, m, ft, self.rng(ce), "%.2f (%.2f–%.2f)" % ref,
                        "**ABOVE (worse)**" if worse else
                        "below (better)" if better else "ok",
                        self.rng([r[0]["lossy_ratio"] for r in rs], "%.1f"),
                        self.rng([r[0]["ratio"] for r in rs], "%.1f"),
                        "%.1f" % paper_ratio(sp, 4, m == "explicit"),
                        "%.4f" % sp])
        self.table(["s", "mask", "text", "CE ours mean (min–max)",
                    "CE ud_ref mean (range)", "within ref ±0.1",
                    "lossy ratio (real)", "model ratio (real)",
                    "paper ratio 16/((1−s)(b+G))", "measured s"], rows)
        self.emit("Rows with a seed outside the reference range ±%.1f: %d "
                  "(ABOVE = a CE worse than the reference allows, below = "
                  "better than the reference's best)." % (TOL, flags))
        self.emit()

    def table_b(self):
        a = self.a
        S = (0.9, 0.95, 0.97, 0.99)
        cases = [("stories260K BF16", "base-bf16", "ft-lives-bf16", "lives"),
                 ("stories260K BF16", "base-bf16", "ft-pi-bf16", "pi"),
                 ("stories260K F32", "base-f32", "ft-lives-f32", "lives"),
                 ("stories260K F32", "base-f32", "ft-pi-f32", "pi"),
                 ("toylora F32", "base", "ft-a", "mlp"),
                 ("toylora F32", "base", "ft-b", "mlp")]
        jobs = [(c, s, seed) for c in cases for s in S for seed in range(a.seeds)]

        def run(j):
            (_, base, ft, kind), s, seed = j
            top = "toylora" if kind == "mlp" else "stories260K"
            ref = self.model("%s/%s/model.safetensors" % (top, ft))
            return self.compress("%s/%s" % (top, base), {"x": "%s/%s" % (top, ft)},
                                 ["--sparsity", str(s), "--bits", "4",
                                  "--mask", "explicit", "--seed", str(seed)],
                                 kind, ref)["x"]

        res = dict(zip(jobs, self.pmap(run, jobs)))
        self.emit("### b. Fidelity sweep (b=4, explicit mask, seeds 0..%d; "
                  "F32 sources double every ratio)" % (a.seeds - 1))
        self.emit()
        rows = []
        for c in cases:
            name, base, ft, kind = c
            dt = "f32" if "F32" in name else "bf16"
            for s in S:
                rs = [res[(c, s, k)] for k in range(a.seeds)]
                lr = self.rng([r[0]["lossy_ratio"] for r in rs], "%.1f")
                mr = self.rng([r[0]["ratio"] for r in rs], "%.1f")
                if kind == "mlp":
                    ag = [r[1][0] for r in rs]
                    a0 = self.agree_base[ft][0]
                    kept = [(x - a0) / (1 - a0) for x in ag]
                    rows.append([name, ft, s, lr, mr, "agree " + self.rng(ag, "%.4f"),
                                 "agree 1", "agree %.4f" % a0,
                                 self.rng([100 * k for k in kept], "%.0f%%")])
                else:
                    cb = self.ce[("stories260K/base-%s" % dt, kind)]
                    cf_ = self.ce[("stories260K/%s" % ft, kind)]
                    ce = [r[1] for r in rs]
                    kept = [(cb - x) / (cb - cf_) for x in ce]
                    rows.append([name, ft + " on " + kind, s, lr, mr,
                                 "CE " + self.rng(ce), "CE %.3f" % cf_,
                                 "CE %.3f" % cb,
                                 self.rng([100 * k for k in kept], "%.0f%%")])
        self.table(["model", "fine-tune", "s", "lossy ratio (real)",
                    "model ratio (real)", "reconstructed", "fine-tuned",
                    "base", "gain kept"], rows)
        self.emit("Gain kept = (CE_base − CE_model)/(CE_base − CE_ft); for "
                  "toylora (agree_model − agree_base)/(1 − agree_base), "
                  "agreement measured against the fine-tune itself.")
        self.emit()

    def table_c(self):
        a = self.a
        self.emit("### c1. Explicit vs seeded mask at equal s (from table a; "
                  "stories260K BF16, means over seeds)")
        self.emit()
        rows = []
        for s in (0.5, 0.8, 0.9):
            for ft in ("lives", "pi"):
                e = [self.a_res[(s, "explicit", ft, k)] for k in range(a.seeds)]
                d = [self.a_res[(s, "seeded", ft, k)] for k in range(a.seeds)]
                eb = statistics.mean(r[0]["lossy_stored_bytes"] for r in e)
                db = statistics.mean(r[0]["lossy_stored_bytes"] for r in d)
                rows.append([s, ft, "%.0f" % eb, "%.0f" % db, "%.2f" % (eb / db),
                             self.rng([r[1] for r in e]), self.rng([r[1] for r in d])])
        self.table(["s", "text", "lossy bytes explicit", "lossy bytes seeded",
                    "explicit/seeded bytes", "CE explicit", "CE seeded"], rows)

        jobs = [(m, R, seed) for m in ("ultradelta", "dare") for R in (8, 16)
                for seed in range(a.seeds)]
        jobs += [("magnitude", R, 0) for R in (8, 16)] + [("bitdelta", None, 0)]

        def run(j):
            m, R, seed = j
            opts = ["--method", m, "--seed", str(seed)]
            if R:
                opts += ["--ratio", str(R)]
            return self.compress("stories260K/base-bf16",
                                 {"x": "stories260K/ft-lives-bf16"}, opts,
                                 "lives")["x"]

        res = dict(zip(jobs, self.pmap(run, jobs)))
        self.emit("### c2. Methods at equal real bytes (stories260K lives "
                  "BF16, --ratio R, default explicit mask; bitdelta at its "
                  "own ratio)")
        self.emit()
        rows = []
        cb, cf_ = self.ce[("stories260K/base-bf16", "lives")], \
            self.ce[("stories260K/ft-lives-bf16", "lives")]
        for m, R in [("ultradelta", 8), ("dare", 8), ("magnitude", 8),
                     ("ultradelta", 16), ("dare", 16), ("magnitude", 16),
                     ("bitdelta", None)]:
            rs = [res[j] for j in jobs if j[0] == m and j[1] == R]
            ce = [r[1] for r in rs]
            rows.append([m, R or "—", self.rng([r[0]["sparsity"] for r in rs], "%.4f"),
                         self.rng([r[0]["lossy_ratio"] for r in rs], "%.1f"),
                         self.rng([r[0]["ratio"] for r in rs], "%.1f"),
                         self.rng(ce),
                         "%.0f%%" % (100 * (cb - statistics.mean(ce)) / (cb - cf_))])
        self.table(["method", "--ratio", "measured s", "lossy ratio (real)",
                    "model ratio (real)", "CE lives", "gain kept"], rows)

    def table_d(self):
        a = self.a

        def run(seed):
            return self.compress("stories260K/base-bf16",
                                 {"lives": "stories260K/ft-lives-bf16",
                                  "pi": "stories260K/ft-pi-bf16"},
                                 ["--sparsity", "0.9", "--mask", "explicit",
                                  "--seed", str(seed)],
                                 {"lives": "lives", "pi": "pi"})

        res = self.pmap(run, range(a.seeds))
        self.emit("### d. Group add (lives + pi in one add, s=0.9, explicit, "
                  "seeds 0..%d): trace-norm factor" % (a.seeds - 1))
        self.emit()
        rows = []
        for n in ("lives", "pi"):
            g = [self.lossy_gain(r[n][0]) for r in res]
            alone = [self.a_res[(0.9, "explicit", n, k)][1] for k in range(a.seeds)]
            rows.append([n, self.rng(g, "%.3f"),
                         self.rng([x * (1 - 0.9) for x in g], "%.3f"),
                         self.rng([r[n][1] for r in res]), self.rng(alone),
                         self.rng([r[n][0]["lossy_ratio"] for r in res], "%.1f")])
        self.table(["model", "gain γ/(1−s)", "γ", "CE in group", "CE alone (table a)",
                    "lossy ratio (real)"], rows)

    def table_e(self):
        a = self.a
        d = self.scratch()
        base, ft = os.path.join(d, "base.safetensors"), os.path.join(d, "ft.safetensors")
        self.sh(self.gen, "model", base, "--mb", str(a.mb))
        self.sh(self.gen, "finetune", base, ft)
        st = os.path.join(d, "st")
        self.sh(self.uc, "-q", "init", st)
        self.sh(self.uc, "-q", "add-base", st, "base", base)
        size = os.path.getsize(ft)
        rows = []
        for name, opts in [("lossless", ["--lossless"]),
                           ("explicit", ["--sparsity", "0.97", "--mask", "explicit"]),
                           ("seeded", ["--sparsity", "0.97", "--mask", "seeded"])]:
            t0 = time.monotonic()
            self.sh(self.uc, "-q", "add", st, "--base", "base",
                    "%s=%s" % (name, ft), *opts)
            dt = time.monotonic() - t0
            info = json.loads(self.sh(self.udfs, "info", st, name, "--json"))
            rows.append([name, "%.2f" % dt, "%.0f" % (size / dt / 1e6),
                         "%.1f" % info["ratio"],
                         "%.1f" % info["lossy_ratio"] if "lossy_ratio" in info else "—"])
        shutil.rmtree(d, ignore_errors=True)
        self.emit("### e. Compression speed (gen_model model --mb %d BF16 + "
                  "finetune, %.0f MB source, %d cores, default --jobs)" %
                  (a.mb, size / 1e6, os.cpu_count()))
        self.emit()
        self.table(["mode", "seconds", "MB/s of source", "model ratio",
                    "lossy ratio"], rows)

    # ------------------------------------------------------ f, g: adaptive
    F_CASES = [("stories260K", "bf16", "lives"), ("stories260K", "bf16", "pi"),
               ("stories260K", "f32", "lives"), ("stories260K", "f32", "pi"),
               ("toylora", "f32", "ft-a"), ("toylora", "f32", "ft-b")]
    # (method, setting, options, random): settings that draw nothing at
    # random run once (seed 0) and stand for every seed.
    F_SETTINGS = (
        [("ultradelta explicit", "s=" + x, ["--sparsity", x, "--mask", "explicit"], True)
         for x in ("0.5", "0.7", "0.8", "0.9")] +
        [("ultradelta seeded", "s=" + x, ["--sparsity", x, "--mask", "seeded"], True)
         for x in ("0.5", "0.7", "0.8", "0.9", "0.95")] +
        [("magnitude", "--ratio " + R, ["--method", "magnitude", "--ratio", R], False)
         for R in ("8", "16", "32")] +
        [("dare", "--ratio " + R, ["--method", "dare", "--ratio", R], True)
         for R in ("8", "16")] +
        [("bitdelta", "", ["--method", "bitdelta"], False)] +
        [("adaptive", "--ratio " + R, ["--method", "adaptive", "--ratio", R], True)
         for R in ("8", "10", "12", "15", "20", "25", "30", "40")] +
        [("adaptive default", "max error 0.1", [], False)])
    F_RATIOS = (10, 15, 20, 25, 30, 40)

    def f_kept(self, case, score):
        """Share of the fine-tuning gain kept (toylora: of the agreement
        the fine-tune adds over the base)."""
        top, dt, ft = case
        if top == "toylora":
            a0 = self.agree_base[ft][0]
            return (score[0] - a0) / (1 - a0)
        cb = self.ce[("stories260K/base-%s" % dt, ft)]
        cf_ = self.ce[("stories260K/ft-%s-%s" % (ft, dt), ft)]
        return (cb - score) / (cb - cf_)

    def table_f(self):
        a = self.a
        jobs = [(c, i, seed) for c in self.F_CASES
                for i in range(len(self.F_SETTINGS))
                for seed in range(a.seeds if self.F_SETTINGS[i][3] else 1)]

        def run(j):
            (top, dt, ft), i, seed = j
            opts = self.F_SETTINGS[i][2] + ["--seed", str(seed)]
            if top == "toylora":
                ref = self.model("toylora/%s/model.safetensors" % ft)
                return self.compress("toylora/base", {"x": "toylora/" + ft},
                                     opts, "mlp", ref)["x"]
            return self.compress("stories260K/base-" + dt,
                                 {"x": "stories260K/ft-%s-%s" % (ft, dt)},
                                 opts, ft)["x"]

        res = dict(zip(jobs, self.pmap(run, jobs)))
        self.f_res = res
        self.emit("### f. Gain kept against the real model ratio, every "
                  "method (seeds 0..%d, one run for the settings that draw "
                  "nothing at random; ratio and gain: mean (min–max); "
                  "toylora: share of the agreement the fine-tune adds over "
                  "its base, and the agreement itself)" % (a.seeds - 1))
        self.emit()
        wins = []
        for c in self.F_CASES:
            top, dt, ft = c
            rows, curves = [], collections.defaultdict(list)
            for i, (m, setting, _, rnd) in enumerate(self.F_SETTINGS):
                rs = [res[(c, i, k)] for k in range(a.seeds if rnd else 1)]
                ratio = [r[0]["ratio"] for r in rs]
                kept = [self.f_kept(c, r[1]) for r in rs]
                row = [m, setting or "—", self.rng(ratio, "%.1f"),
                       self.rng([100 * k for k in kept], "%.0f%%")]
                if top == "toylora":
                    row.append(self.rng([r[1][0] for r in rs], "%.4f"))
                rows.append(row)
                curves[m].append((statistics.mean(ratio),
                                  statistics.mean(kept)))
            self.emit("%s %s, %s" % (top, dt.upper(), ft))
            self.emit()
            self.table(["method", "setting", "model ratio (real)", "gain kept"] +
                       (["agreement"] if top == "toylora" else []), rows)
            wins.append((c, curves))
        self.emit("At equal real bytes (each curve interpolated linearly in "
                  "log ratio between its own points, never extrapolated; "
                  "bitdelta counts within ±10% of its one ratio):")
        self.emit()
        rows = []
        for c, curves in wins:
            for R in self.F_RATIOS:
                ad = self.interp(curves["adaptive"], R)
                best, who = None, "—"
                for m, pts in curves.items():
                    if m.startswith("adaptive"):
                        continue
                    v = self.interp(pts, R, m == "bitdelta")
                    if v is not None and (best is None or v > best):
                        best, who = v, m
                rows.append(["%s %s %s" % c, "%dx" % R,
                             "—" if ad is None else "%.0f%%" % (100 * ad),
                             "—" if best is None else "%.0f%% (%s)" % (100 * best, who),
                             "—" if ad is None or best is None else
                             ("**adaptive**" if ad > best else who)])
        self.table(["model", "real ratio", "adaptive", "best other", "more gain kept"],
                   rows)

    @staticmethod
    def interp(pts, R, point=False):
        pts = sorted(pts)
        if point:
            return pts[0][1] if abs(pts[0][0] - R) <= 0.1 * R else None
        for (r0, k0), (r1, k1) in zip(pts, pts[1:]):
            if r0 <= R <= r1 and r1 > r0:
                t = (math.log(R) - math.log(r0)) / (math.log(r1) - math.log(r0))
                return k0 + t * (k1 - k0)
        return None

    def table_g(self):
        self.emit("### g. Codes the adaptive method chose per tensor type "
                  "(seed 0; lrKxB = rank-K part with B-bit factors, qB = "
                  "B-bit dead-zone codes of the residual, qB@randP% = the same on "
                  "a seeded random P%, rescaled, sign1@topP% = sign "
                  "times one scale on the P% largest, xor = stored exactly)")
        self.emit()
        rows = []
        for c in self.F_CASES:
            for i, (m, setting, _, _) in enumerate(self.F_SETTINGS):
                if not m.startswith("adaptive"):
                    continue
                info = self.f_res[(c, i, 0)][0]
                codes = info["params"].get("codes", {})
                kinds = collections.defaultdict(collections.Counter)
                for f in info["files"]:
                    for t in f["tensors"]:
                        if len(t["shape"]) < 2:
                            continue
                        typ = re.sub(r"(layers|network)\.\d+\.", r"\1.N.", t["name"])
                        if "network" in t["name"]:
                            typ = t["name"]
                        kinds[typ][codes.get(t["name"], {}).get("code", t["encoding"])] += 1
                desc = "; ".join("%s: %s" % (typ.replace("model.", "").replace(".weight", ""),
                                             ", ".join("%s×%d" % kv if kv[1] > 1 else kv[0]
                                                       for kv in cnt.most_common(3)))
                                 for typ, cnt in sorted(kinds.items()))
                rows.append(["%s %s %s" % c, setting,
                             "%.1f" % info["ratio"], desc])
        self.table(["model", "setting", "ratio", "codes per tensor type"], rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("-o", "--output")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--mb", type=int, default=512)
    ap.add_argument("--tables", default="abcdefg")
    ap.add_argument("--tmp", default=os.environ.get("TMPDIR", "/tmp"))
    a = ap.parse_args()
    b = Bench(a)
    t0 = time.monotonic()
    try:
        b.emit("## Lossy fidelity (bench/fidelity.sh, %s)" %
               time.strftime("%Y-%m-%d %H:%M"))
        b.emit()
        b.refs()
        if "a" in a.tables or "c" in a.tables or "d" in a.tables:
            b.table_a()
        if "b" in a.tables:
            b.table_b()
        if "c" in a.tables:
            b.table_c()
        if "d" in a.tables:
            b.table_d()
        if "e" in a.tables:
            b.table_e()
        if "f" in a.tables or "g" in a.tables:
            b.table_f()
        if "g" in a.tables:
            b.table_g()
        b.emit("Total bench time %.0f s." % (time.monotonic() - t0))
    finally:
        shutil.rmtree(b.tmp, ignore_errors=True)
        if a.output:
            with open(a.output, "w") as f:
                f.write("\n".join(b.out) + "\n")


if __name__ == "__main__":
    sys.exit(main())
