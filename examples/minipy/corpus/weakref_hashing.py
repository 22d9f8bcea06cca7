# A live weakref hashes like its referent; a dead weakref keeps a hash computed
# while alive, but cannot be hashed for the first time after death.
# Ported from CPython Lib/test/test_weakref.py test_hashing.
import gc
import weakref
gc.disable()

class Object:
    def __init__(self, arg):
        self.arg = arg
    def __hash__(self):
        return hash(self.arg)

x = Object(42)
y = Object(42)
a = weakref.ref(x)
b = weakref.ref(y)
print("hash matches referent:", hash(a) == hash(42))
del x, y
gc.collect()
print("retained hash:", hash(a) == hash(42))
try:
    hash(b)
except TypeError as e:
    print("dead, never hashed:", e.__class__.__name__)
