# With automatic collection disabled, cyclic garbage accumulates no matter how
# much is allocated; only an explicit gc.collect() frees it.
# Original scenario (gc.disable prevents automatic collection).
import gc
gc.collect()
gc.disable()

finalized = [0]

class Cyc:
    def __init__(self):
        self.me = self
    def __del__(self):
        finalized[0] += 1

old = gc.get_threshold()
gc.set_threshold(5, 5, 5)
for i in range(500):
    Cyc()
    junk = [[], []]
print("disabled: freed automatically:", finalized[0])
print("isenabled:", gc.isenabled())
print("collected:", gc.collect())
print("freed after collect:", finalized[0])
gc.set_threshold(old[0], old[1], old[2])
