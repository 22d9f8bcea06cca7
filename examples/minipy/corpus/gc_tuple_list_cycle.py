# A tuple can only join a cycle through a mutable container: list -> tuple -> list.
# Both objects are garbage, so collect() returns 2.
# Ported from CPython Lib/test/test_gc.py GCTests.test_tuple.
import gc
gc.disable()
gc.collect()

l = []
t = (l,)
l.append(t)
print("cycle closed:", l[0] is t, t[0] is l)
print("collect while alive:", gc.collect())
del t
print("collect with list alive:", gc.collect())
del l
print("collect after del:", gc.collect())
