# A cycle through a list, a dict and an instance is reclaimed as a unit; the
# collect count covers all three containers.
# Original scenario (cycles through mixed containers).
import gc
gc.disable()
gc.collect()

class Holder:
    pass

h = Holder()
l = [1, 2, h]
d = {"list": l}
h.d = d
del h, l, d
print("list-dict-instance:", gc.collect())

l1 = []
l2 = [l1]
l1.append(l2)
del l1, l2
print("two lists:", gc.collect())

d1 = {}
d2 = {"back": d1}
d1["fwd"] = d2
del d1, d2
print("two dicts:", gc.collect())

x = []
t = (x, "s", 3)
x.append(t)
x.append({"t": t})
del x, t
print("list-tuple-dict:", gc.collect())
