# Weakrefs and resurrection: a refcount-resurrected object keeps its weakrefs
# (no callback fires); a cycle-resurrected object has its weakrefs cleared
# (callback fires) even though it lives on.
# Original scenario (weakrefs around resurrection).
import gc
import weakref
gc.disable()
gc.collect()

saved = []
fired = []

class Lazarus:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        saved.append(self)

a = Lazarus("acyclic")
wa = weakref.ref(a, lambda r: fired.append("acyclic"))
del a
print("acyclic: ref alive", wa() is not None, "fired", fired)

b = Lazarus("cyclic")
b.me = b
wb = weakref.ref(b, lambda r: fired.append("cyclic"))
del b
gc.collect()
print("cyclic: ref alive", wb() is not None, "fired", fired)
print("saved:", [x.name for x in saved])
saved.clear()
gc.collect()
print("after release:", wa() is None, sorted(fired))
