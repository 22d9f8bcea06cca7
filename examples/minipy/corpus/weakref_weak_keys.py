# WeakKeyDictionary: keys are held weakly, lookups work by equality, and
# entries vanish as the keys die.
# Ported from CPython Lib/test/test_weakref.py MappingTestCase.test_weak_keys.
import gc
import weakref
gc.disable()

class Object:
    def __init__(self, arg):
        self.arg = arg
    def __eq__(self, other):
        return isinstance(other, Object) and self.arg == other.arg
    def __hash__(self):
        return hash(self.arg)

COUNT = 10
objects = [Object(i) for i in range(COUNT)]
d = weakref.WeakKeyDictionary()
for o in objects:
    d[o] = o.arg
ok = True
for o in objects:
    if weakref.getweakrefcount(o) != 1 or d[o] != o.arg:
        ok = False
print("lookups ok:", ok)
print("copy equal:", sorted(d.values()) == sorted(d.copy().values()))
print("len:", len(d))
del objects[0]
print("after deleting one:", len(d))
del objects, o
print("after deleting all:", len(d))
o = Object(42)
d[o] = "What is the meaning of the universe?"
print("contains:", o in d, 34 in d)
print("equal key finds it:", d[Object(42)])
