# WeakValueDictionary: lookups return the stored objects, copies match, and
# entries vanish as the values die.
# Ported from CPython Lib/test/test_weakref.py MappingTestCase.test_weak_values.
import gc
import weakref
gc.disable()

class Object:
    def __init__(self, arg):
        self.arg = arg
    def __repr__(self):
        return "<Object " + repr(self.arg) + ">"

COUNT = 10
objects = [Object(i) for i in range(COUNT)]
d = weakref.WeakValueDictionary()
for o in objects:
    d[o.arg] = o
ok = True
for o in objects:
    if weakref.getweakrefcount(o) != 1 or d[o.arg] is not o:
        ok = False
print("lookups ok:", ok)
items1 = sorted(d.items())
items2 = sorted(d.copy().items())
print("copy equal:", items1 == items2)
del items1, items2
print("len:", len(d))
del objects[0]
print("after deleting one:", len(d))
del objects, o
print("after deleting all:", len(d))
d = weakref.WeakValueDictionary()
try:
    d[1]
except KeyError as e:
    print("missing key:", e.__class__.__name__)
d[2] = Object(2)
try:
    d[2]
except KeyError as e:
    print("temporary value gone:", e.__class__.__name__)
