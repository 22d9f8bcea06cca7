# Tuple unpacking, swapping and augmented assignment: the temporary tuple dies
# after unpacking, swapped objects survive, and += on a list keeps the list.
# Original scenario (refcount with unpacking and augmented assignment).
import gc
gc.disable()

class C:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        print("del", self.name)
    def __repr__(self):
        return "C(" + self.name + ")"

def pair():
    return C("p"), C("q")

a, b = pair()
print("unpacked", a, b)
a, b = b, a
print("swapped", a, b)
a, b = C("r"), a
print("rebound a, b")
l = [C("l0")]
l += [C("l1")]
print("list after +=", l)
l = l + [C("l2")]
print("new list", l)
del a, b, l
print("end")
