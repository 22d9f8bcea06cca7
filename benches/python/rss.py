"""CPython's resident bytes per live object for a two-slot instance (the payload of
benches/src/bin/rss.rs), as RSS growth over 1,000,000 objects."""
import gc

N = 1_000_000


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class Node:
    __slots__ = ("next", "value")


gc.disable()
keep = [None] * N
before = rss()
prev = None
for i in range(N):
    n = Node()
    n.next = prev
    n.value = 1
    keep[i] = n
    prev = n
per = (rss() - before) / N
print(f"CPython __slots__ instance    {per:6.1f} bytes/object  ({per - 16:5.1f} over the 16-byte payload)")
