# Automatic collections triggered by allocation also invoke gc.callbacks, with
# start/stop pairs; the young generation (0) is collected most often.
# Original scenario (gc.callbacks during automatic collection).
import gc
gc.disable()
gc.collect()

phases = []
gens = []

def cb(phase, info):
    phases.append(phase)
    if phase == "stop":
        gens.append(info["generation"])

old = gc.get_threshold()
gc.set_threshold(20, 10, 10)
gc.callbacks.append(cb)
gc.enable()
keep = []
for i in range(3000):
    keep.append([i])
gc.disable()
gc.callbacks.remove(cb)
gc.set_threshold(old[0], old[1], old[2])
print("automatic collections happened:", len(gens) > 0)
print("phases paired:", phases.count("start") == phases.count("stop"))
print("alternating:", phases[0] == "start" and phases[-1] == "stop")
print("gen 0 most frequent:", gens.count(0) >= gens.count(1) and gens.count(0) >= gens.count(2))
print("generations valid:", min(gens) >= 0 and max(gens) <= 2)
