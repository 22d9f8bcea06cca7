# A finalize registered on an object that is part of a garbage cycle runs only
# when the collector frees the cycle; its args must not refer to the object.
# Original scenario (weakref.finalize with cyclic garbage).
import gc
import weakref
gc.disable()
gc.collect()

class Node:
    def __init__(self, name):
        self.name = name

log = []

def report(name):
    log.append(name)

a = Node("a")
b = Node("b")
a.b = b
b.a = a
fa = weakref.finalize(a, report, "a")
fb = weakref.finalize(b, report, "b")
del a, b
print("after del:", fa.alive, fb.alive, log)
gc.collect()
print("after collect:", fa.alive, fb.alive, sorted(log))
