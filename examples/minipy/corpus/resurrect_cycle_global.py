# A cyclic object resurrected by its __del__ during collection survives with
# its attributes intact; when it becomes garbage again it is freed without a
# second __del__.
# Original scenario (resurrection from cyclic garbage).
import gc
gc.disable()
gc.collect()

saved = []
calls = []

class Phoenix:
    def __init__(self, name):
        self.name = name
        self.me = self
    def __del__(self):
        calls.append(self.name)
        saved.append(self)

p = Phoenix("cyclic-bird")
del p
print("collected:", gc.collect())
print("calls:", calls, "saved:", len(saved))
bird = saved.pop()
print("intact:", bird.name, bird.me is bird, gc.is_finalized(bird))
del bird
print("collected:", gc.collect())
print("calls:", calls)
