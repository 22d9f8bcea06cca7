# A weakref subclass instance may hold the only strong reference to its own
# referent; deleting the ref frees the object without calling the callback.
# Ported from CPython Lib/test/test_weakref.py test_subclass_refs_with_cycle.
import gc
import weakref
gc.disable()

class MyRef(weakref.ref):
    pass

class C:
    def __del__(self):
        print("C.__del__")

cbcalled = []

def callback(w):
    cbcalled.append(1)

o = C()
r1 = MyRef(o, callback)
r1.o = o
print("subclass ref alive:", r1() is o)
del o
print("ref holds it")
del r1
print("callbacks:", len(cbcalled))

o = C()
r1 = MyRef(o, callback)
r2 = MyRef(o, callback)
r1.r = r2
r2.o = o
del o
del r2
print("still held through r1")
del r1
print("callbacks:", len(cbcalled))
