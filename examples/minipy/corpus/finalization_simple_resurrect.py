# An acyclic object resurrected by __del__ keeps its weakrefs alive (refcount
# path: weakrefs are only cleared on real deallocation); once released again
# it dies without a second __del__ call.
# Ported from CPython Lib/test/test_finalization.py
# SimpleFinalizationTest.test_simple_resurrect.
import gc
import weakref
gc.disable()
gc.collect()

del_calls = []
survivors = []

class SimpleResurrector:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        del_calls.append(self.name)
        survivors.append(self)

s = SimpleResurrector("s")
wr = weakref.ref(s)
del s
gc.collect()
print("del_calls:", del_calls, "survivors:", [x.name for x in survivors])
print("weakref still alive:", wr() is not None)
survivors.clear()
print("weakref dead after clearing survivors:", wr() is None)
gc.collect()
print("del_calls:", del_calls, "survivors:", survivors)
