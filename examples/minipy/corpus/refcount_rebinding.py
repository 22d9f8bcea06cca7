# Rebinding a name releases the old object right after the new value is bound;
# the new object is created before the old one dies.
# Original scenario (refcount deaths via rebinding).
import gc
gc.disable()

class C:
    def __init__(self, name):
        self.name = name
        print("init", name)
    def __del__(self):
        print("del", self.name)

a = C("first")
a = C("second")
print("rebound")
a = None
print("set to None")
holder = [C("item")]
holder[0] = C("replacement")
print("replaced list item")
d = {"k": C("value1")}
d["k"] = C("value2")
print("replaced dict value")
holder = None
d = None
print("done")
