# With DEBUG_SAVEALL every unreachable object (instances and their lists) is
# kept in gc.garbage; clearing gc.garbage and breaking the cycle frees them.
# Original scenario (gc.garbage with DEBUG_SAVEALL).
import gc
gc.disable()
gc.collect()

class Node:
    def __init__(self, name):
        self.name = name
        self.kids = []

a = Node("a")
b = Node("b")
a.kids.append(b)
b.kids.append(a)
del a, b
gc.set_debug(gc.DEBUG_SAVEALL)
n = gc.collect()
gc.set_debug(0)
print("collected:", n, "garbage:", len(gc.garbage))
names = sorted([o.name for o in gc.garbage if type(o) is Node])
print("nodes in garbage:", names)
print("lists in garbage:", len([o for o in gc.garbage if type(o) is list]))
for o in gc.garbage:
    if type(o) is Node:
        o.kids.clear()
gc.garbage.clear()
print("garbage cleared:", gc.garbage, "collect:", gc.collect())
