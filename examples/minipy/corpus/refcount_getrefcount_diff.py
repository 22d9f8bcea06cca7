# sys.getrefcount() differences: each container slot, name binding and
# attribute adds one reference; removing them gives it back.
# Original scenario (sys.getrefcount relations).
import sys

class C:
    pass

a = C()
print("fresh object at module level:", sys.getrefcount(a))
base = sys.getrefcount(a)
l = [a, a, a]
print("list with 3 slots:", sys.getrefcount(a) - base)
b = a
print("plus another name:", sys.getrefcount(a) - base)
holder = C()
holder.attr = a
d = {"k": a}
print("plus attribute and dict value:", sys.getrefcount(a) - base)
t = (a,)
print("plus tuple:", sys.getrefcount(a) - base)
del l, b, t
holder.attr = None
d.clear()
print("back to base:", sys.getrefcount(a) - base)

def count_inside(x):
    return sys.getrefcount(x)

print("argument adds one:", count_inside(a) - base)
