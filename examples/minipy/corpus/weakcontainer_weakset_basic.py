# WeakSet: add/discard/membership/len work like set, and members disappear as
# they die.
# Original scenario (WeakSet).
import gc
import weakref
gc.disable()

class Obj:
    def __init__(self, name):
        self.name = name

s = weakref.WeakSet()
a = Obj("a")
b = Obj("b")
c = Obj("c")
s.add(a)
s.add(b)
s.add(c)
s.add(a)
print("len:", len(s), a in s)
s.discard(b)
print("after discard:", len(s), b in s)
del c
print("after del c:", len(s), sorted([o.name for o in s]))
s.add(Obj("temp"))
print("temporary member gone:", len(s))
del a
print("empty:", len(s))
