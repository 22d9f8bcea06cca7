# A finalizer in a cycle may break the cycle itself; the other member is then
# freed normally and nothing is finalized twice.
# Original scenario (finalizers mutating the cycle they belong to).
import gc
gc.disable()
gc.collect()

count = {}

class C:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        count[self.name] = count.get(self.name, 0) + 1
        if hasattr(self, "other") and self.other is not None:
            self.other.other = None
            self.other = None

a = C("a")
b = C("b")
a.other = b
b.other = a
del a, b
gc.collect()
print("finalizer calls:", sorted(count.items()))
print("second collect:", gc.collect())
print("garbage:", gc.garbage)
