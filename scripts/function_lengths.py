#!/usr/bin/env python3
"""Fails naming every function or initializer longer than 80 lines (from its signature to
its closing brace, as swift format lays it out at 120 columns) in the tracked Swift files
of Sources, Tests and Fuzz. Braces inside string literals, comments and the parameter
list (default closures) do not count.
    scripts/function_lengths.py [LIMIT]"""
import re
import subprocess
import sys

limit = int(sys.argv[1]) if len(sys.argv) > 1 else 80
files = subprocess.run(["git", "ls-files", "Sources/*.swift", "Tests/*.swift", "Fuzz/*.swift"],
                       capture_output=True, text=True, check=True).stdout.split()
found = []
for path in files:
    lines = open(path, encoding="utf-8").read().split("\n")
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("//") or not re.search(r"\b(func|init)\b[^=]*\(", line):
            continue
        depth = paren = 0
        started = False
        for j in range(i, min(len(lines), i + 5000)):
            code = re.sub(r'"(\\.|[^"\\])*"', '""', lines[j]).split("//")[0]
            for ch in code:
                if ch == "(":
                    paren += 1
                elif ch == ")":
                    paren -= 1
                elif ch == "{" and (paren == 0 or started):
                    depth += 1
                    started = True
                elif ch == "}" and (paren == 0 or started):
                    depth -= 1
            if started and depth == 0:
                if j - i + 1 > limit:
                    found.append(f"{path}:{i + 1}: {j - i + 1} lines: {stripped[:80]}")
                break
            if not started and j > i + 20:
                break
for f in found:
    print(f)
if found:
    sys.exit(f"{len(found)} functions over {limit} lines")
