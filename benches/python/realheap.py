"""CPython side of the real-heap shapes of benches/src/realheap.rs: same names, same sizes, same
aging. Prints the seconds of the timed part only (one float on stdout); a failed check prints a
message on stderr and exits with status 1 (status 2: bad arguments).

Run: python3 benches/python/realheap.py SHAPE [--size SCALE]

Nodes. A Rust node holds its payload inline ([u8; P] in the same allocation). A CPython object
with __slots__ and a `bytes` payload would be two objects (two allocations, two frees, and a
payload the collector never needs to see), so the payload here is inline instead: P/8 extra
slots (16 bytes: 2 slots, 40: 5, 100: 13, i.e. 104 bytes), each holding a small int. Small ints
are preallocated and shared, so no slot costs an allocation, and the object has the Rust node's
footprint: GC header, object header, prev, next, flag, __weakref__, payload words. The one
difference left: CPython's traverse visits the payload slots (a cheap check per slot that the
int is not a GC object), where Rust knows a byte array holds no references.

Aging (never timed), as in realheap.rs: about 2M objects (size 1.0) of the three payload sizes,
as singles, 2-rings and chains of 4, freed in a shuffled order except a quarter of the groups,
kept alive for the whole shape as a long-lived background (about 500K objects, which every full
collection traverses, as reap's does). Garbage rings of the aging are collected before the shape.

Automatic collection is off (gc.disable()) except in auto-rings-p40. Checks: gc.collect()
returns the number of unreachable objects, which must equal the garbage the shape made;
finalizers ran once per object; weak references are dead or alive as expected.
"""
import collections
import gc
import operator
import random
import sys
import time
import weakref

AGING_OBJECTS = 2_000_000
OBJECTS = 1_000_000


def scaled(n, size):
    return max(1, int(n * size))


def live_side(size):
    return max(2, scaled(1000, size ** 0.5))


def make_node_class(payload):
    words = (payload + 7) // 8
    names = [f"p{i}" for i in range(words)]
    body = ["def __init__(self, seed):", "    self.prev = None", "    self.next = None",
            "    self.flag = seed & 1 == 1"]
    body.append(f"    self.{names[0]} = seed & 255")
    body += [f"    self.{n} = 0" for n in names[1:-1]]
    if len(names) > 1:
        body.append(f"    self.{names[-1]} = (seed & 255) ^ 90")
    ns = {}
    exec("\n".join(body), ns)
    return type(f"Node{payload}", (), {
        "__slots__": ("prev", "next", "flag", "__weakref__", *names),
        "__init__": ns["__init__"],
    })


NODE = {p: make_node_class(p) for p in (16, 40, 100)}

FINALIZED = 0


class FinNode:
    __slots__ = ("prev", "next", "flag", "__weakref__", "p0", "p1", "p2", "p3", "p4")

    def __init__(self, seed):
        self.prev = None
        self.next = None
        self.flag = seed & 1 == 1
        self.p0 = seed & 255
        self.p1 = 0
        self.p2 = 0
        self.p3 = 0
        self.p4 = (seed & 255) ^ 90

    def __del__(self):
        global FINALIZED
        FINALIZED += 1


def fail(msg):
    print(f"realheap.py: check failed: {msg}", file=sys.stderr)
    sys.exit(1)


def ring(cls, length, seed):
    first = cls(seed)
    prev = first
    for i in range(1, length):
        n = cls(seed + i)
        prev.next = n
        n.prev = prev
        prev = n
    prev.next = first
    first.prev = prev
    return first


def chain(cls, length, seed):
    head = cls(seed)
    cur = head
    for i in range(1, length):
        n = cls(seed + i)
        cur.next = n
        cur = n
    return head


def age(size):
    rng = random.Random(0x9E3779B97F4A7C15)
    target = scaled(AGING_OBJECTS, size)
    items = []
    made = 0
    classes = (NODE[16], NODE[40], NODE[100])
    while made < target:
        r = rng.getrandbits(64)
        cls = classes[(r >> 8) % 3]
        kind = r % 4
        if kind < 2:
            items.append(cls(r))
            made += 1
        elif kind == 2:
            items.append(ring(cls, 2, r))
            made += 2
        else:
            items.append(chain(cls, 4, r))
            made += 4
    rng.shuffle(items)
    keep = items[len(items) * 3 // 4:]
    del items[len(items) * 3 // 4:]
    items.clear()  # frees in the shuffled order
    gc.collect()
    gc.collect()
    return keep


def timed_collect(garbage):
    t = time.perf_counter()
    found = gc.collect()
    elapsed = time.perf_counter() - t
    if found != garbage:
        fail(f"{garbage} garbage objects made, gc.collect() found {found}")
    return elapsed


def cold_rings(cls, length, n):
    rings = max(1, n // length)
    for i in range(rings):
        ring(cls, length, i * length)
    return timed_collect(rings * length)


def cold_live(cls, size, touched):
    side = live_side(size)
    heads = [chain(cls, side, i * side) for i in range(side)]
    gc.collect()
    gc.collect()
    for i in range(side):
        ring(cls, 2, i)
    if touched:
        for h in heads:
            x = h
            del x
    elapsed = timed_collect(2 * side)
    if any(h.next is None for h in heads):
        fail("a live chain lost its links")
    return elapsed


def fin_cycles(n):
    pairs = (n + 1) // 2
    before = FINALIZED
    for i in range(pairs):
        a = FinNode(2 * i)
        b = FinNode(2 * i + 1)
        a.next = b
        b.next = a
    del a, b
    elapsed = timed_collect(2 * pairs)
    if FINALIZED - before != 2 * pairs:
        fail(f"{2 * pairs} objects with finalizers, {FINALIZED - before} finalizer runs")
    return elapsed


def weak_cleared(n):
    pairs = (n + 1) // 2
    cls = NODE[40]
    refs = []
    for i in range(pairs):
        a = cls(2 * i)
        b = cls(2 * i + 1)
        a.next = b
        b.prev = a
        b.next = a
        a.prev = b
        refs.append(weakref.ref(a))
        refs.append(weakref.ref(b))
    del a, b
    elapsed = timed_collect(2 * pairs)
    if any(r() is not None for r in refs):
        fail("a weak reference to collected garbage is still alive")
    return elapsed


def live_objects(n):
    cls = NODE[40]
    return [cls(i) for i in range(n)]


def weak_first(n):
    objs = live_objects(n)
    t = time.perf_counter()
    refs = list(map(weakref.ref, objs))
    elapsed = time.perf_counter() - t
    if len(refs) != n or any(r() is None for r in refs):
        fail("the weak references made are not all alive")
    return elapsed


def weak_upgrade(n):
    objs = live_objects(n)
    refs = list(map(weakref.ref, objs))
    if any(r() is None for r in refs):
        fail("a weak reference to a live object is dead")
    t = time.perf_counter()
    collections.deque(map(operator.call, refs), maxlen=0)  # each result dropped at once
    elapsed = time.perf_counter() - t
    if sum(1 for r in refs if r() is not None) != n:
        fail("an upgrade failed")
    return elapsed


def weak_death(n):
    objs = live_objects(n)
    refs = list(map(weakref.ref, objs))
    t = time.perf_counter()
    del objs
    elapsed = time.perf_counter() - t
    if any(r() is not None for r in refs):
        fail("a weak reference to a freed object is still alive")
    return elapsed


def auto_rings(n):
    cls = NODE[40]
    probes = []
    gc.enable()
    t = time.perf_counter()
    for length in (2, 10, 21):
        rings = max(1, (n // 3) // length)
        for i in range(rings):
            first = ring(cls, length, i * length)
            if i % 10_000 == 0:
                probes.append(weakref.ref(first))
        del first
    gc.collect()
    elapsed = time.perf_counter() - t
    gc.disable()
    if any(r() is not None for r in probes):
        fail("a garbage ring survived the final collection")
    return elapsed


SHAPES = [
    *(f"cold-rings-{r}-p{p}" for r in (2, 10, 21) for p in (16, 40, 100)),
    *(f"cold-ring-1m-p{p}" for p in (16, 40, 100)),
    *(f"cold-live-p{p}" for p in (16, 40, 100)),
    *(f"cold-live-touched-p{p}" for p in (16, 40, 100)),
    "cold-fin-cycles",
    "cold-weak-cleared",
    "weak-first",
    "weak-upgrade",
    "weak-death",
    "auto-rings-p40",
]


def run(shape, size):
    n = scaled(OBJECTS, size)
    payload = 40
    body = shape
    if shape.rsplit("-p", 1)[-1].isdigit():
        body, p = shape.rsplit("-p", 1)
        payload = int(p)
    cls = NODE[payload]
    if body.startswith("cold-rings-"):
        return lambda: cold_rings(cls, int(body.rsplit("-", 1)[1]), n)
    return {
        "cold-ring-1m": lambda: cold_rings(cls, n, n),
        "cold-live": lambda: cold_live(cls, size, False),
        "cold-live-touched": lambda: cold_live(cls, size, True),
        "cold-fin-cycles": lambda: fin_cycles(n),
        "cold-weak-cleared": lambda: weak_cleared(n),
        "weak-first": lambda: weak_first(n),
        "weak-upgrade": lambda: weak_upgrade(n),
        "weak-death": lambda: weak_death(n),
        "auto-rings": lambda: auto_rings(n),
    }[body]


def main():
    args = sys.argv[1:]
    size = 1.0
    if "--size" in args:
        i = args.index("--size")
        try:
            size = float(args[i + 1])
        except (IndexError, ValueError):
            print("realheap.py: --size needs a number", file=sys.stderr)
            sys.exit(2)
        del args[i:i + 2]
    if len(args) != 1 or args[0] not in SHAPES or not 0 < size <= 100:
        print(f"usage: realheap.py SHAPE [--size S]; shapes: {' '.join(SHAPES)}",
              file=sys.stderr)
        sys.exit(2)
    sys.setrecursionlimit(10_000)
    gc.disable()
    shape = run(args[0], size)
    background = age(size)
    elapsed = shape()
    del background
    print(f"{elapsed:.9f}")


if __name__ == "__main__":
    main()
