# Deleting the last name bound to an object runs __del__ immediately, before
# the next statement; deleting one of two names does nothing.
# Original scenario (refcount deaths via del).
import gc
gc.disable()

class C:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        print("del", self.name)

a = C("a")
b = a
print("two names")
del a
print("deleted a, b still holds it")
del b
print("deleted b")
x = C("x")
y = C("y")
del y, x
print("deleted y and x in one statement")
