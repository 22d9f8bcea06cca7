# A self-cycle whose __del__ breaks its own cycle: the collector copes with the
# object losing its last reference during finalization.
# Ported from CPython Lib/test/test_finalization.py
# SelfCycleFinalizationTest.test_simple_suicide.
import gc
import weakref
gc.disable()
gc.collect()

del_calls = []

class SuicidalSelfCycle:
    def __init__(self, name):
        self.name = name
        self.ref = self
    def __del__(self):
        del_calls.append(self.name)
        self.ref = None

s = SuicidalSelfCycle("s")
wr = weakref.ref(s)
del s
gc.collect()
print("del_calls:", del_calls)
print("weakref dead:", wr() is None)
gc.collect()
print("del_calls after second collect:", del_calls)
print("garbage:", gc.garbage)
