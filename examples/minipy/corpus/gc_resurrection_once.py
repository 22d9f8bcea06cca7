# A resurrected object in a self-cycle has its __del__ called only once:
# a later collection reclaims it without finalizing it again.
# Ported from CPython Lib/test/test_gc.py test_resurrection_only_happens_once_per_object.
import gc
gc.collect()
gc.disable()

class A:
    def __init__(self):
        self.me = self

class Lazarus(A):
    resurrected = 0
    resurrected_instances = []
    def __del__(self):
        Lazarus.resurrected += 1
        Lazarus.resurrected_instances.append(self)

laz = Lazarus()
print("start:", Lazarus.resurrected)
del laz
gc.collect()
print("after first collect:", Lazarus.resurrected, len(Lazarus.resurrected_instances))
Lazarus.resurrected_instances.clear()
print("cleared:", Lazarus.resurrected)
gc.collect()
print("after second collect:", Lazarus.resurrected)
gc.enable()
