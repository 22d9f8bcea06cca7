# A cycle that is still referenced from outside (a global list) is not
# garbage: collect() returns 0 and no finalizer runs until the outside
# reference is dropped.
# Original scenario (reachable cycles survive collection).
import gc
gc.disable()
gc.collect()

log = []

class C:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        log.append(self.name)

a = C("a")
b = C("b")
a.b = b
b.a = a
keep = [b]
del a, b
print("collect with external ref:", gc.collect())
print("still reachable:", keep[0].a.name)
keep.clear()
print("external ref dropped")
print("finalized before collect:", log)
print("collected:", gc.collect())
print("finalized:", sorted(log))
