# Objects hanging off a garbage cycle (but not part of it) are unreachable too:
# the same collection finalizes and counts them along with the cycle.
# Original scenario (acyclic garbage reachable only from a cycle).
import gc
gc.disable()
gc.collect()

log = []

class C:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        log.append(self.name)

a = C("cycle-a")
b = C("cycle-b")
a.b = b
b.a = a
a.leaf = C("leaf")
a.leaf.sub = C("sub-leaf")
del a, b
print("before collect:", log)
print("collected:", gc.collect())
print("finalized:", sorted(log))
