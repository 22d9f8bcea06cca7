# Freeing a tuple releases items last to first; freeing a dict releases its
# values in insertion order.
# Original scenario (containers dropping their items).
import gc
gc.disable()

class C:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        print("del", self.name)

t = (C("t0"), C("t1"), C("t2"))
del t
print("-- tuple freed")
d = {}
d["z"] = C("dz")
d["a"] = C("da")
d["m"] = C("dm")
del d
print("-- dict freed")
d = {"x": C("x"), "y": C("y")}
d.pop("x")
print("-- popped x")
del d["y"]
print("-- del y")
