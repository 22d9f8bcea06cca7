"""CPython side of the collection benchmarks: the same shapes as benches/benches/collect.rs.

Prints one line per workload: name, nanoseconds per object (median of rounds).
Run: python3 benches/python/collect.py [--nodes N]
"""
import gc
import sys
import time
import weakref

N = 1_000_000
if "--nodes" in sys.argv:
    N = int(sys.argv[sys.argv.index("--nodes") + 1])
ROUNDS = 5


class Node:
    __slots__ = ("prev", "next", "__weakref__")


class Fin:
    __slots__ = ("other",)

    def __del__(self):
        pass


def rings(size, total):
    for _ in range(total // size):
        first = Node()
        prev = first
        for _ in range(size - 1):
            n = Node()
            n.prev = prev
            prev.next = n
            prev = n
        prev.next = first
        first.prev = prev


def timed(setup, objects):
    times = []
    for _ in range(ROUNDS):
        gc.collect()
        keep = setup()
        t = time.perf_counter_ns()
        gc.collect()
        times.append(time.perf_counter_ns() - t)
        del keep
    times.sort()
    return times[len(times) // 2] / objects


def report(name, ns):
    print(f"{name}\t{ns:.3f}")


gc.disable()
for size in (2, 10, 21):
    report(f"rings_{size}", timed(lambda: rings(size, N), N - N % size))
report("one_big_ring", timed(lambda: rings(N, N), N))


def fin_pairs():
    for _ in range(N // 2):
        a = Fin()
        b = Fin()
        a.other = b
        b.other = a


report("finalizer_cycles", timed(fin_pairs, N))


def weak_cleared():
    refs = []
    for _ in range(N // 2):
        a = Node()
        b = Node()
        a.next = b
        b.next = a
        refs.append(weakref.ref(a))
        refs.append(weakref.ref(b))
    return refs


report("weakrefs_cleared", timed(weak_cleared, N))


def chains(newer_to_older):
    heads = []
    for _ in range(1000):
        prev = None
        nodes = []
        for _ in range(1000):
            n = Node()
            nodes.append(n)
        if newer_to_older:
            for i in range(1, len(nodes)):
                nodes[i].next = nodes[i - 1]
            heads.append(nodes[-1])
        else:
            for i in range(len(nodes) - 1):
                nodes[i].next = nodes[i + 1]
            heads.append(nodes[0])
    return heads


def live_heap(newer_to_older, touch_heads, generation):
    times = []
    for _ in range(ROUNDS):
        gc.collect()
        heads = chains(newer_to_older)
        gc.collect()
        rings(2, 2000)
        if touch_heads:
            for h in heads:
                x = h
                del x
        t = time.perf_counter_ns()
        gc.collect(generation)
        times.append(time.perf_counter_ns() - t)
        del heads
    times.sort()
    return times[len(times) // 2]


report("live_heap_gen0_ms", live_heap(False, False, 0) / 1e6)
report("live_heap_gen0_touched_ms", live_heap(False, True, 0) / 1e6)
report("live_heap_full_older_to_newer_ns_per_obj", live_heap(False, False, 2) / 1_000_000)
report("live_heap_full_newer_to_older_ns_per_obj", live_heap(True, False, 2) / 1_000_000)
