# gc.get_count() after collect() is small and its older-generation entries
# are 0; allocating many containers raises the young count, and collect(0)
# resets it and bumps generation 1.
# Original scenario (gc.get_count relations).
import gc
gc.disable()
gc.collect()

a = gc.get_count()
print("older gens zero:", a[1] == 0 and a[2] == 0)
print("young small:", a[0] < 5)
junk = [[] for i in range(100)]
b = gc.get_count()
print("young grew by at least 100:", b[0] - a[0] >= 100)
gc.collect(0)
c = gc.get_count()
print("after collect(0): young small:", c[0] < 5, "gen1:", c[1], "gen2:", c[2])
gc.collect(1)
print("after collect(1):", gc.get_count()[1:])
gc.collect()
print("after full collect:", gc.get_count()[1:])
