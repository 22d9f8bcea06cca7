#!/usr/bin/env python3
"""End-to-end benchmarks: minipy against python3 on the same .py files.

Runs every program in this directory (or those named) with python3 and with minipy, several
times each, alternating, and reports for each the best CPU time (user + system of the child
process, steadier than wall time on a shared machine), the best wall time, and the ratio
minipy / python3 of CPU times (below 1: minipy is faster). Both must print the same: a program
whose outputs differ is reported and makes the run fail.

    cargo build --release -p reap-minipy
    python3 examples/minipy/bench/run.py                 # all programs, 3 runs each
    python3 examples/minipy/bench/run.py -n 5 gc_collect # one program, 5 runs
"""

import argparse
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))

# What each program stands for; the first three are the GC-heavy ones the targets are about.
PROGRAMS = [
    ("gc_collect", "pyperformance gc_collect: 300 × 100 garbage cycles of 21 nodes, gc.collect()"),
    ("gc_traversal", "pyperformance gc_traversal: 100 full collections of a live 500k-edge heap"),
    ("weak_cache", "a WeakValueDictionary cache: 200k lookups, values dying (some in cycles)"),
    ("binary_trees", "binary trees of tuples to depth 15: allocation and refcount teardown"),
    ("object_churn", "100k rounds of short-lived instances, dicts and lists, some with __del__"),
]


def cpu_of_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_once(cmd):
    cpu0 = cpu_of_children()
    start = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=HERE)
    elapsed = time.perf_counter() - start
    cpu = cpu_of_children() - cpu0
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr.decode()}")
    return cpu, elapsed, done.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("programs", nargs="*", help="names of programs to run (default: all)")
    parser.add_argument("-n", "--runs", type=int, default=3, help="runs of each (best is kept)")
    parser.add_argument("--minipy", default=os.path.join(ROOT, "target", "release", "minipy"))
    parser.add_argument("--python", default="python3")
    args = parser.parse_args()

    if not os.path.exists(args.minipy):
        sys.exit(f"no minipy binary at {args.minipy}: cargo build --release -p reap-minipy")
    chosen = [p for p in PROGRAMS if not args.programs or p[0] in args.programs]
    if not chosen:
        sys.exit(f"unknown program; known: {', '.join(p[0] for p in PROGRAMS)}")
    version = subprocess.run([args.python, "--version"], stdout=subprocess.PIPE, text=True).stdout.strip()
    print(f"minipy vs {version}, best of {args.runs} runs each; seconds of CPU (wall)")
    print(f"{'program':<14} {'python3':>15} {'minipy':>15} {'ratio':>6}  what")
    failed = False
    for name, what in chosen:
        path = f"{name}.py"
        cpu = {"python3": float("inf"), "minipy": float("inf")}
        wall = dict(cpu)
        outputs = {}
        for _ in range(args.runs):
            for label, cmd in (("python3", [args.python, path]), ("minipy", [args.minipy, path])):
                c, w, out = run_once(cmd)
                cpu[label] = min(cpu[label], c)
                wall[label] = min(wall[label], w)
                outputs[label] = out
        same = outputs["python3"] == outputs["minipy"]
        failed |= not same
        ratio = cpu["minipy"] / cpu["python3"]
        note = what if same else "OUTPUTS DIFFER: " + what
        py = f"{cpu['python3']:.2f} ({wall['python3']:.2f})"
        mp = f"{cpu['minipy']:.2f} ({wall['minipy']:.2f})"
        print(f"{name:<14} {py:>15} {mp:>15} {ratio:>5.2f}×  {note}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
