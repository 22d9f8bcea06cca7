# A __del__ may resurrect a *different* object: the dying object's partner is
# stored away and survives, while the finalized object itself goes.
# Original scenario (resurrecting another object from a finalizer).
import gc
import weakref
gc.disable()
gc.collect()

rescued = []

class Parent:
    def __init__(self):
        self.child = Child()
        self.child.parent = self
    def __del__(self):
        print("Parent.__del__ rescues the child")
        rescued.append(self.child)
        self.child.parent = None

class Child:
    pass

p = Parent()
wp = weakref.ref(p)
del p
gc.collect()
print("parent gone:", wp() is None)
print("child rescued:", len(rescued), rescued[0].parent)
rescued.clear()
print("collect:", gc.collect())
