# With gc enabled and a small threshold0, allocating many containers triggers
# automatic collections that reclaim cyclic garbage without any gc.collect().
# Original scenario (automatic collection by allocation threshold).
import gc
gc.disable()
gc.collect()

finalized = [0]

class Cyc:
    def __init__(self):
        self.me = self
    def __del__(self):
        finalized[0] += 1

old = gc.get_threshold()
gc.set_threshold(10, 10, 10)
gc.enable()
for i in range(1000):
    Cyc()
    junk = [[], [], []]
gc.disable()
print("automatic collections freed some:", finalized[0] > 0)
print("not more than created:", finalized[0] <= 1000)
gc.collect()
print("all freed after explicit collect:", finalized[0] == 1000)
gc.set_threshold(old[0], old[1], old[2])
print("threshold restored:", gc.get_threshold() == old)
