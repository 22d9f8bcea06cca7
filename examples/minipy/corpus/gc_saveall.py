# With DEBUG_SAVEALL, cyclic garbage is appended to gc.garbage instead of freed.
# Ported from CPython Lib/test/test_gc.py GCTests.test_saveall.
import gc
gc.disable()
gc.collect()
print("garbage empty:", gc.garbage == [])

L = []
L.append(L)
marker = L
debug = gc.get_debug()
gc.set_debug(debug | gc.DEBUG_SAVEALL)
print("saveall set:", gc.get_debug() & gc.DEBUG_SAVEALL != 0)
del L
del marker
gc.collect()
gc.set_debug(debug)
print("debug restored:", gc.get_debug() == debug)
print("garbage length:", len(gc.garbage))
obj = gc.garbage.pop()
print("is a self-containing list:", type(obj) is list, obj[0] is obj)
print("garbage empty again:", gc.garbage == [])
obj.clear()
del obj
print("final collect:", gc.collect())
