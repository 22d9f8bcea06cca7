# All weakrefs to an object are invalidated before any callback runs, so a
# callback reading another ref to the same object sees None.
# Ported from CPython Lib/test/test_weakref.py test_multiple_selfref_callbacks.
import gc
import weakref
gc.disable()

class C:
    pass

class Holder:
    pass

h = Holder()
seen = []

def callback(ref):
    seen.append(h.ref())
    seen.append(ref1())

c = C()
h.ref = weakref.ref(c, callback)
ref1 = weakref.ref(c, callback)
del c
print("callbacks:", len(seen) // 2)
print("seen:", seen)
