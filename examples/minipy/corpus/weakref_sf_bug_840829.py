# A weakref callback that calls gc.collect() while an instance is being
# deallocated must not double-free it.
# Ported from CPython Lib/test/test_weakref.py test_sf_bug_840829.
import gc
import weakref

log = []

class C:
    pass

def cb(ignore):
    log.append("cb")
    gc.collect()

c = C()
wr = weakref.ref(c, cb)
del c
print("first part:", log)
del wr

c1 = C()
c1.i = C()
wr = weakref.ref(c1.i, cb)
c2 = C()
c2.c1 = c1
del c1
print("c1 kept alive by c2:", wr() is not None)
del c2
print("second part:", log, wr() is None)
