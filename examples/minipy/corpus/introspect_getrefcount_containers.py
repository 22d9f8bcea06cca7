# sys.getrefcount() differences around containers: building, copying and
# clearing containers adds and removes exactly one reference per slot, and a
# dead temporary list gives its references back.
# Original scenario (sys.getrefcount relations).
import sys

class C:
    pass

x = C()
base = sys.getrefcount(x)
l = [x] * 5
print("list of 5:", sys.getrefcount(x) - base)
l2 = list(l)
print("copied list:", sys.getrefcount(x) - base)
s = {1: x, 2: x}
print("dict values:", sys.getrefcount(x) - base)
l.clear()
l2 = None
s = {}
print("after clearing:", sys.getrefcount(x) - base)
print("temporary list:", len([x, x, x]), sys.getrefcount(x) - base)
y = C()
y.a = x
y.b = x
print("two attributes:", sys.getrefcount(x) - base)
del y
print("owner deleted:", sys.getrefcount(x) - base)
print("key of a dict:", sys.getrefcount(x) - base == 0)
keyed = {x: 1}
print("as a key:", sys.getrefcount(x) - base)
