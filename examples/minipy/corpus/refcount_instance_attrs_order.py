# When an instance dies, __del__ runs first (attributes still set), then its
# attributes are released in the order they were first assigned.
# Original scenario (instances dropping their attributes).
import gc
gc.disable()

class C:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        print("del", self.name)

class Owner:
    def __init__(self):
        self.first = C("first")
        self.second = C("second")
        self.third = C("third")
    def __del__(self):
        print("Owner.__del__ sees", hasattr(self, "first"), self.second.name, self.third.name)

o = Owner()
o.second = C("second-replaced")
print("replaced second")
del o.first
print("deleted first")
del o
print("-- owner freed")
