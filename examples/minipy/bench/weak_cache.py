# A weak-value cache: objects are looked up by key in a WeakValueDictionary and live only while
# somebody holds them; entries vanish as their values die (callbacks), in cycles too.
import gc
import weakref


class Record:
    def __init__(self, key):
        self.key = key
        self.peer = None


cache = weakref.WeakValueDictionary()
hits = 0
misses = 0
held = []
for i in range(200000):
    key = (i * 7919) % 5000
    r = cache.get(key)
    if r is None:
        misses += 1
        r = Record(key)
        if key % 3 == 0:
            r.peer = r  # a cycle: only the collector frees it
        cache[key] = r
    else:
        hits += 1
    held.append(r)
    if len(held) > 1000:
        held = held[500:]
    if i % 20000 == 0:
        gc.collect()
held = []
gc.collect()
print(hits, misses, len(cache))
