# An acyclic object with __del__ is finalized as soon as its last reference
# goes; its weakref is dead afterwards and later collections do nothing more.
# Ported from CPython Lib/test/test_finalization.py SimpleFinalizationTest.test_simple.
import gc
import weakref
gc.disable()
gc.collect()

del_calls = []
survivors = []

class Simple:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        del_calls.append(self.name)

s = Simple("s")
wr = weakref.ref(s)
del s
print("del_calls right after del:", del_calls)
gc.collect()
print("del_calls:", del_calls, "survivors:", survivors)
print("weakref dead:", wr() is None)
gc.collect()
print("del_calls after second collect:", del_calls)
print("garbage:", gc.garbage)
