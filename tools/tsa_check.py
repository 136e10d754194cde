#!/usr/bin/env python3
"""Runs clang's thread-safety analysis over sources of a configured build tree, without building.

    tools/tsa_check.py BUILD_DIR [PATH_PREFIX ...]

PATH_PREFIX: paths relative to the repository root (a directory such as `tiers/`, or a file); none
means every translation unit. Takes each matching translation unit's command from
BUILD_DIR/compile_commands.json (any compiler),
swaps in clang++ with -fsyntax-only -Wthread-safety -Werror=thread-safety, and reports the files that
fail. A quick check while annotating; CI builds the whole tree with KVSTASH_THREAD_SAFETY=ON.
"""
import json
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

GCC_ONLY = ("-Wno-error=restrict", "-fno-semantic-interposition")


def clang_command(entry):
    args = shlex.split(entry["command"]) if "command" in entry else list(entry["arguments"])
    out = ["clang++", "-fsyntax-only", "-Wthread-safety", "-Werror=thread-safety", "-Wno-unknown-warning-option"]
    skip = False
    for arg in args[1:]:
        if skip:
            skip = False
            continue
        if arg == "-o":
            skip = True
            continue
        if arg == "-c" or arg in GCC_ONLY or arg.startswith("-Werror") and arg != "-Werror":
            continue
        if arg == "-Werror":
            continue  # only the thread-safety findings are errors here
        out.append(arg)
    return out


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    build, prefixes = sys.argv[1], sys.argv[2:]
    entries = json.load(open(f"{build}/compile_commands.json"))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    chosen = [e for e in entries if e["file"].endswith((".cc", ".cpp")) and
              (not prefixes or any(os.path.relpath(e["file"], root).startswith(p) for p in prefixes))]

    def run(entry):
        proc = subprocess.run(clang_command(entry), cwd=entry["directory"], capture_output=True, text=True)
        return entry["file"], proc.returncode, proc.stderr

    failed = 0
    with ThreadPoolExecutor(max_workers=2) as pool:
        for path, rc, err in pool.map(run, chosen):
            if rc != 0:
                failed += 1
                print(f"== {path}\n{err}")
    print(f"tsa_check: {len(chosen) - failed}/{len(chosen)} translation units clean")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
