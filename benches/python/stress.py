"""CPython side of `reap-stress --compare`: the workloads of benches/src/workloads.rs, same shapes
and sizes, with automatic collection on (as reap's stress run) and gc.collect() where reap calls
collect. Prints the seconds the workload took.

Run: python3 benches/python/stress.py WORKLOAD [--size SCALE]
"""
import gc
import sys
import time
import weakref


def scaled(n, size):
    return max(1, int(n * size))


class TreeNode:
    __slots__ = ("left", "right")

    def __init__(self, left, right):
        self.left = left
        self.right = right


def tree(depth):
    if depth == 0:
        return TreeNode(None, None)
    return TreeNode(tree(depth - 1), tree(depth - 1))


def trees(size):
    long_lived = tree(min(16, 10 + int(size * 6)))
    for _ in range(scaled(4, size)):
        for depth in range(4, 17, 2):
            for _ in range(1 << (16 - depth)):
                tree(depth)
    del long_lived


class Node:
    __slots__ = ("prev", "next", "__weakref__")

    def __init__(self):
        self.prev = None
        self.next = None


def make_ring(n):
    first = Node()
    prev = first
    for _ in range(n - 1):
        node = Node()
        node.prev = prev
        prev.next = node
        prev = node
    prev.next = first
    first.prev = prev


def rings(size):
    total = scaled(300_000, size)
    for ring in (2, 10, 21):
        for _ in range(total // ring):
            make_ring(ring)
        gc.collect()


def big_ring(size):
    make_ring(scaled(1_000_000, size))
    gc.collect()


def live_heap(size):
    count = scaled(1000, size ** 0.5)
    length = scaled(1000, size ** 0.5)
    heads = []
    for _ in range(count):
        head = Node()
        cur = head
        for _ in range(length - 1):
            n = Node()
            cur.next = n
            cur = n
        heads.append(head)
    gc.collect()
    for _ in range(scaled(20, size)):
        for _ in range(1000):
            make_ring(2)
        gc.collect(0)
    gc.collect()
    del heads


def weak_churn(size):
    ran = [0]

    def cb(_w):
        ran[0] += 1

    made = 0
    for _ in range(scaled(200, size)):
        weaks = []
        keep = []
        for i in range(1000):
            a = Node()
            weaks.append(weakref.ref(a, cb))
            made += 1
            weaks.append(weakref.ref(a))
            if i % 2 == 0:
                a.next = a
            elif i % 3 == 0:
                keep.append(a)
            del a
        for w in weaks:
            w()
        gc.collect()
        del keep
        assert all(w() is None for w in weaks)
    assert ran[0] == made, (ran[0], made)


FINALIZED = [0]


class Fin:
    __slots__ = ("other",)

    def __del__(self):
        FINALIZED[0] += 1


def finalizers(size):
    made = 0
    for _ in range(scaled(20, size)):
        for _ in range(10_000):
            a = Fin()
            b = Fin()
            b.other = a
            a.other = b
            made += 2
        del a, b
        gc.collect()
    assert FINALIZED[0] == made, (FINALIZED[0], made)


WORKLOADS = {
    "trees": trees,
    "rings": rings,
    "big-ring": big_ring,
    "live-heap": live_heap,
    "weak-churn": weak_churn,
    "finalizers": finalizers,
}


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in WORKLOADS:
        print("usage: stress.py WORKLOAD [--size SCALE]; workloads: " + ", ".join(WORKLOADS), file=sys.stderr)
        sys.exit(2)
    size = 1.0
    if "--size" in sys.argv:
        size = float(sys.argv[sys.argv.index("--size") + 1])
    sys.setrecursionlimit(10_000)
    start = time.perf_counter()
    WORKLOADS[sys.argv[1]](size)
    gc.collect()
    print(f"{time.perf_counter() - start:.6f}")


main()
