# Repeated refcount resurrection: because __del__ is called once per object,
# an object resurrected once dies quietly the next time.
# Original scenario (finalizer called at most once).
import gc
gc.disable()

keep = []

class Stubborn:
    def __init__(self, name):
        self.name = name
        self.deaths = 0
    def __del__(self):
        self.deaths += 1
        print(self.name, "__del__ number", self.deaths)
        keep.append(self)

for r in range(3):
    s = Stubborn("s" + str(r))
    s = None
    print("round", r, "kept:", len(keep))
    survivor = keep.pop()
    print("finalized flag:", gc.is_finalized(survivor))
    survivor = None
print("total kept:", len(keep))
