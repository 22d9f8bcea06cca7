# Two instances referring to each other survive del until gc.collect(), which
# reclaims exactly those 2 objects; a second collect finds nothing.
# Original scenario (cycle of plain instances without __del__).
import gc
import weakref
gc.disable()
gc.collect()

class Node:
    pass

a = Node()
b = Node()
a.other = b
b.other = a
wa = weakref.ref(a)
wb = weakref.ref(b)
del a, b
print("alive after del:", wa() is not None, wb() is not None)
print("collected:", gc.collect())
print("dead after collect:", wa() is None, wb() is None)
print("second collect:", gc.collect())
