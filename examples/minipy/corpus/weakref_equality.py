# Live weakrefs compare equal when their referents do; dead weakrefs compare
# by identity.
# Ported from CPython Lib/test/test_weakref.py test_equality.
import gc
import weakref
gc.disable()

class Object:
    def __init__(self, arg):
        self.arg = arg
    def __eq__(self, other):
        if isinstance(other, Object):
            return self.arg == other.arg
        return False
    def __hash__(self):
        return hash(self.arg)

x = Object(1)
y = Object(1)
z = Object(2)
a = weakref.ref(x)
b = weakref.ref(y)
c = weakref.ref(z)
d = weakref.ref(x)
print("alive a==b:", a == b, a != b)
print("alive a==c:", a == c, a != c)
print("alive a==d:", a == d, a != d)
print("ref vs object:", a == x, a != x)
del x, y, z
gc.collect()
print("all dead:", a() is None and b() is None and c() is None)
print("dead a==b:", a == b, a != b)
print("dead a==c:", a == c, a != c)
print("dead a==d matches identity:", (a == d) == (a is d))
print("dead a==a:", a == a)
