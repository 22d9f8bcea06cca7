# WeakSet members that are in garbage cycles stay listed until gc.collect()
# frees them; then len() drops.
# Original scenario (WeakSet with cyclic members).
import gc
import weakref
gc.disable()
gc.collect()

class Node:
    def __init__(self, name):
        self.name = name
        self.me = self

live = Node("live")
members = weakref.WeakSet()
members.add(live)
for i in range(5):
    members.add(Node("cyc" + str(i)))
print("before collect:", len(members))
n = gc.collect()
print("collected at least the 5 nodes:", n >= 5)
print("after collect:", len(members), [m.name for m in members])
