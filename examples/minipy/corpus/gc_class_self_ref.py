# A class object stored as its own class attribute forms a cycle; collecting it
# reclaims something (the exact count is an implementation detail).
# Ported from CPython Lib/test/test_gc.py GCTests.test_class / test_newstyleclass.
import gc
import weakref
gc.disable()
gc.collect()

class A:
    pass

A.a = A
wr = weakref.ref(A)
print("class alive:", wr() is A)
del A
print("still alive before collect:", wr() is not None)
n = gc.collect()
print("collected something:", n > 0)
print("class gone:", wr() is None)
print("second collect:", gc.collect())
