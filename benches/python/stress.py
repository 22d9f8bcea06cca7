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


def chains(count, length):
    heads = []
    for _ in range(count):
        head = Node()
        cur = head
        for _ in range(length - 1):
            n = Node()
            cur.next = n
            cur = n
        heads.append(head)
    return heads


def live_heap(size, touch=False):
    heads = chains(scaled(1000, size ** 0.5), scaled(1000, size ** 0.5))
    gc.collect()
    for _ in range(scaled(20, size)):
        for _ in range(1000):
            make_ring(2)
        if touch:
            for h in heads:
                x = h
                del x
        gc.collect(0)
    gc.collect()
    del heads


def live_heap_touched(size):
    live_heap(size, touch=True)


class Vertex:
    __slots__ = ("edges",)

    def __init__(self):
        self.edges = []


MASK = (1 << 64) - 1


def mutator(size):
    state = [0x2545F4914F6CDD1D]

    def nxt(n):
        r = state[0]
        r ^= (r << 13) & MASK
        r ^= r >> 7
        r ^= (r << 17) & MASK
        state[0] = r
        return r % max(n, 1)

    roots = []
    for _ in range(scaled(1_000_000, size)):
        k = nxt(10)
        if k <= 3:
            roots.append(Vertex())
        elif k <= 6:
            if roots:
                a = roots[nxt(len(roots))]
                b = roots[nxt(len(roots))]
                a.edges.append(b)
        elif k == 7:
            if roots:
                a = roots[nxt(len(roots))]
                if a.edges:
                    i = nxt(len(a.edges))
                    a.edges[i] = a.edges[-1]
                    a.edges.pop()
        elif roots:
            i = nxt(len(roots))
            roots[i] = roots[-1]
            roots.pop()
    del roots
    gc.collect()


def weak_map(size):
    d = weakref.WeakValueDictionary()
    hits = 0
    for rnd in range(scaled(200, size)):
        values = [Node() for _ in range(1000)]
        for i, v in enumerate(values):
            d[rnd * 1000 + i] = v
        del v
        for _ in range(2):
            for i in range(1000):
                hits += d.get(rnd * 1000 + i) is not None
        values = [v for i, v in enumerate(values) if (i + 1) % 2 == 0]
        for i in range(1000):
            hits += d.get(rnd * 1000 + i) is not None
        del values
        assert len(d) == 0
    return hits


def mix(size):
    ran = [0]
    made = 0

    def cb(_w):
        ran[0] += 1

    module = chains(50, 200)
    weaks = []
    fins = FINALIZED[0]
    made_fins = 0
    for step in range(scaled(2000, size)):
        tree(6)
        make_ring(2 + step % 8)
        a = Node()
        weaks.append(weakref.ref(a, cb))
        made += 1
        if step % 2 == 0:
            a.next = a
        del a
        f = Fin()
        made_fins += 1
        if step % 3 == 0:
            f.other = f
        del f
        head = module[step % len(module)]
        del head
        if step % 100 == 99:
            gc.collect()
            assert all(w() is None for w in weaks)
            weaks.clear()
    gc.collect()
    del weaks
    del module
    gc.collect()
    assert ran[0] == made, (ran[0], made)
    assert FINALIZED[0] - fins == made_fins, (FINALIZED[0] - fins, made_fins)


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
    "live-heap-touched": live_heap_touched,
    "weak-churn": weak_churn,
    "finalizers": finalizers,
    "mutator": mutator,
    "weak-map": weak_map,
    "mix": mix,
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
