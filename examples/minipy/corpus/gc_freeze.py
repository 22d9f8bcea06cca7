# gc.freeze() moves every tracked object to the permanent generation, so frozen
# cycles are not collected until gc.unfreeze().
# Ported from CPython Lib/test/test_gc.py GCTests.test_freeze.
import gc
gc.disable()
gc.collect()

class Node:
    def __init__(self, name):
        self.name = name
        self.me = self
    def __del__(self):
        print("collected", self.name)

n = Node("frozen")
gc.freeze()
print("freeze count positive:", gc.get_freeze_count() > 0)
del n
print("collect while frozen:", gc.collect())
m = Node("young")
del m
print("collect young:", gc.collect())
gc.unfreeze()
print("freeze count after unfreeze:", gc.get_freeze_count())
print("collect after unfreeze:", gc.collect())
