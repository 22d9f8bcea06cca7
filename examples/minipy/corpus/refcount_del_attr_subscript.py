# del on attributes and subscripts releases the object immediately; so do
# setattr-replacement and deleting dict keys. A temporary used only to compute
# a dict key dies while the display is still being built.
# Original scenario (refcount deaths via del obj.attr / del x[k]).
import gc
gc.disable()

class C:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        print("del", self.name)

class Box:
    pass

b = Box()
b.x = C("attr")
setattr(b, "y", C("setattr"))
del b.x
print("after del b.x")
b.y = None
print("after b.y = None")
d = {C("temp-for-key").name: C("value")}
print("dict built")
for k in list(d.keys()):
    del d[k]
print("after del d[k]")
l = [[C("nested")]]
del l[0][0]
print("after del l[0][0]")
