# gc.is_finalized() is False for live objects and True once __del__ has run
# on a (resurrected) object.
# Ported from CPython Lib/test/test_gc.py GCTests.test_is_finalized.
import gc
gc.disable()
gc.collect()

print("int:", gc.is_finalized(3))
storage = []

class Lazarus:
    def __del__(self):
        storage.append(self)

lazarus = Lazarus()
print("before:", gc.is_finalized(lazarus))
del lazarus
gc.collect()
print("resurrected:", len(storage))
lazarus = storage.pop()
print("after:", gc.is_finalized(lazarus))
del lazarus
print("deleted again, storage:", len(storage))
