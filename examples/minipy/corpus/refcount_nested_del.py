# A __del__ that releases other objects triggers their __del__ immediately
# (nested finalization); an object created in __del__ can outlive it.
# Original scenario (finalizers releasing other objects).
import gc
gc.disable()

class C:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        print("enter del", self.name)
        if hasattr(self, "child"):
            self.child = None
            print("child released inside", self.name)
        print("exit del", self.name)

keep = []

class Maker:
    def __del__(self):
        print("Maker.__del__ creates a survivor")
        keep.append(C("made-in-del"))

root = C("root")
root.child = C("child")
root.child.child = C("grandchild")
del root
print("-- maker")
m = Maker()
del m
print("survivor:", keep[0].name)
keep.clear()
print("end")
