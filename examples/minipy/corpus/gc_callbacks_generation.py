# gc.collect(N) reports generation N to gc.callbacks; the "stop" info counts
# the objects collected in that pass.
# Ported from CPython Lib/test/test_gc.py GCCallbackTests.test_collect_generation
# and test_collect_garbage (collected count, no uncollectables).
import gc
gc.disable()
gc.collect()

visit = []

def cb(phase, info):
    visit.append((phase, info["generation"], info["collected"], info["uncollectable"]))

class C1055820:
    def __init__(self, i):
        self.i = i
        self.loop = self

gc.callbacks.append(cb)
gc.collect(2)
print("gen 2:", visit)
visit.clear()
gc.collect(0)
print("gen 0 generations:", [v[1] for v in visit])
visit.clear()
C1055820(666)
l = []
l.append(l)
del l
gc.collect()
gc.callbacks.remove(cb)
for v in visit:
    if v[0] == "stop":
        print("stop: collected", v[2], "uncollectable", v[3])
print("garbage:", gc.garbage)
