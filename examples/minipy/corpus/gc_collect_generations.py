# An object surviving collect(N) moves into generation N+1; the older counts
# show it being promoted (generation 2 is the oldest).
# Ported from CPython Lib/test/test_gc.py GCTests.test_collect_generations.
import gc
gc.disable()
gc.collect()
x = []
gc.collect(0)
a, b, c = gc.get_count()
gc.collect(1)
d, e, f = gc.get_count()
gc.collect(2)
g, h, i = gc.get_count()
print("after collect(0):", (b, c))
print("after collect(1):", (e, f))
print("after collect(2):", (h, i))
