#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Joins C string literals that clang-format split across lines in the
# middle of a message ("a model named \"%s\" already " "exists"), so that
# grep finds each message whole. A literal that ends in \n stays apart:
# that is a line break of a multi-line text. Rewrites the files in place.
import sys

def join(src):
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(src[i:j]); i = j; continue
        if src.startswith("/*", i):
            j = src.find("*/", i + 2) + 2
            out.append(src[i:j]); i = j; continue
        if c == "'":
            j = i + 1
            while src[j] != "'":
                j += 2 if src[j] == "\\" else 1
            out.append(src[i:j + 1]); i = j + 1; continue
        if c == '"':
            j = i + 1
            while src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            lit = src[i:j + 1]
            k = j + 1
            while k < n and src[k] in " \t\n":
                k += 1
            if (k < n and src[k] == '"' and "\n" in src[j + 1:k]
                    and not lit.endswith('\\n"')):
                # Drop the closing quote, the blanks, the opening quote.
                src = src[:j] + src[k + 1:]
                n = len(src)
                continue
            out.append(lit); i = j + 1; continue
        out.append(c); i += 1
    return "".join(out)

for path in sys.argv[1:]:
    s = open(path).read()
    t = join(s)
    if t != s:
        open(path, "w").write(t)
