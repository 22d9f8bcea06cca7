# Weakref callbacks triggered while collecting self-cycles must not see the
# dying instances: every weakref is already dead when any callback runs.
# Ported from CPython Lib/test/test_gc.py GCTests.test_bug1055820b.
import gc
import weakref
gc.disable()
gc.collect()

class C1055820:
    def __init__(self, i):
        self.i = i
        self.loop = self

ouch = []
calls = []

def callback(ignored):
    calls.append(1)
    ouch.clear()
    for wr in WRs:
        ouch.append(wr())

Cs = [C1055820(i) for i in range(2)]
WRs = [weakref.ref(c, callback) for c in Cs]
c = None
gc.collect()
print("before:", len(ouch), len(calls))
Cs = None
gc.collect()
print("callbacks run:", len(calls))
print("ouch:", ouch)
print("all dead:", [wr() is None for wr in WRs])
