# A self-cycle with __del__ is finalized by the collector (PEP 442): __del__
# sees the object intact, then it is freed and its weakref is dead.
# Ported from CPython Lib/test/test_finalization.py SelfCycleFinalizationTest.test_simple.
import gc
import weakref
gc.disable()
gc.collect()

del_calls = []
errors = []

class SimpleSelfCycle:
    def __init__(self, name):
        self.name = name
        self.ref = self
    def __del__(self):
        del_calls.append(self.name)
        if self.ref is not self:
            errors.append("broken self.ref")

s = SimpleSelfCycle("s")
wr = weakref.ref(s)
del s
print("after del:", del_calls)
print("collected:", gc.collect())
print("del_calls:", del_calls, "errors:", errors)
print("weakref dead:", wr() is None)
gc.collect()
print("del_calls after second collect:", del_calls)
print("garbage:", gc.garbage)
