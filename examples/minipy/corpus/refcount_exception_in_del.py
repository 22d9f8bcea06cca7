# An exception raised in __del__ is reported on stderr ("Exception ignored")
# and otherwise swallowed: the program continues and other objects still die.
# Original scenario (exceptions in finalizers).
import gc
gc.disable()

class Bad:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        print("Bad.__del__ starts", self.name)
        raise ValueError("boom in " + self.name)

class Good:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        print("Good.__del__", self.name)

b = Bad("one")
del b
print("after del: program continues")
l = [Good("g1"), Bad("two"), Good("g2")]
del l
print("after list")
c = Bad("cyclic")
c.me = c
del c
gc.collect()
print("after collect")
try:
    raise KeyError("outer")
except KeyError as e:
    x = Bad("inside-handler")
    del x
    print("still handling", e.__class__.__name__)
print("end")
