# A self-cycle whose __del__ resurrects it: the weakref is already cleared
# (cyclic path clears weakrefs before finalizers), and when released again it
# is collected without calling __del__ a second time.
# Ported from CPython Lib/test/test_finalization.py
# SelfCycleFinalizationTest.test_simple_resurrect.
import gc
import weakref
gc.disable()
gc.collect()

del_calls = []
survivors = []

class SelfCycleResurrector:
    def __init__(self, name):
        self.name = name
        self.ref = self
    def __del__(self):
        del_calls.append(self.name)
        survivors.append(self)

s = SelfCycleResurrector("s")
wr = weakref.ref(s)
del s
print("collected:", gc.collect())
print("del_calls:", del_calls, "survivors:", [x.name for x in survivors])
print("weakref cleared:", wr() is None)
print("survivor intact:", survivors[0].ref is survivors[0])
survivors.clear()
print("collected:", gc.collect())
print("del_calls:", del_calls, "survivors:", survivors)
