# gc.get_count() right after a full collection has zero older-generation counts
# and a small young count; allocating a container increases the young count.
# Ported from CPython Lib/test/test_gc.py GCTests.test_get_count.
import gc
gc.disable()
gc.collect()
a, b, c = gc.get_count()
x = []
d, e, f = gc.get_count()
print("older gens after collect:", (b, c))
print("older gens after alloc:", (e, f))
print("young count small:", a < 5)
print("young count grew:", d > a)
print("count is a 3-tuple:", len(gc.get_count()))
