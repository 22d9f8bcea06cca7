# threshold0 == 0 disables automatic collection even while gc is enabled.
# Original scenario (gc.set_threshold(0)).
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
gc.set_threshold(0)
gc.enable()
for i in range(2000):
    Cyc()
    junk = [[], [], []]
print("enabled:", gc.isenabled(), "threshold0:", gc.get_threshold()[0])
print("freed automatically:", finalized[0])
gc.disable()
gc.collect()
print("freed after collect:", finalized[0])
gc.set_threshold(old[0], old[1], old[2])
