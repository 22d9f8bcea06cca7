# Deallocating very deeply nested containers must not overflow the stack, and
# finalizers that call gc.collect() during a dealloc chain are safe.
# Ported from CPython Lib/test/test_gc.py GCTests.test_trashcan.
import gc
gc.disable()
gc.collect()

class Ouch:
    n = 0
    def __del__(self):
        Ouch.n = Ouch.n + 1
        if Ouch.n % 17 == 0:
            gc.collect()

deep = []
for i in range(1000):
    deep = [deep, Ouch()]
print("built")
del deep
print("finalized:", Ouch.n)

deep = []
for i in range(100000):
    deep = [deep]
del deep
print("deep list freed")

t = ()
for i in range(100000):
    t = (t, i)
del t
print("deep tuple freed")

d = {"leaf": []}
for i in range(50000):
    d = {"next": d}
d["next"]["loop"] = d
del d
print("collect deep dict chain:", gc.collect())
