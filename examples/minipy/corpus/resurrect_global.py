# __del__ that stores self in a global resurrects the object (refcount path);
# __del__ is not called again when the resurrected object finally dies.
# Original scenario (resurrection via a global).
import gc
gc.disable()

saved = None
calls = 0

class Phoenix:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        global saved, calls
        calls += 1
        print("__del__ call", calls, "for", self.name)
        saved = self

p = Phoenix("bird")
del p
print("resurrected:", saved.name, "finalized:", gc.is_finalized(saved))
saved.name = "bird-again"
saved = None
print("released again, calls:", calls)
print("saved:", saved)
