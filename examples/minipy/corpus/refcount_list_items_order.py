# Freeing a list releases its items from the last to the first; clearing,
# popping and deleting items release them immediately.
# Original scenario (containers dropping their items).
import gc
gc.disable()

class C:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        print("del", self.name)

l = [C("l0"), C("l1"), C("l2")]
del l
print("-- list freed")
l = [C("p0"), C("p1"), C("p2")]
l.pop()
print("-- popped")
del l[0]
print("-- del l[0]")
l.append(C("p3"))
l.clear()
print("-- cleared")
l = [C("s0"), C("s1"), C("s2"), C("s3")]
l[1:3] = []
print("-- slice removed")
l = None
print("-- end")
