# gc.get_objects() filtered with type(o) is C counts the live instances of C,
# and the count falls as instances die (by refcount or by collection).
# Original scenario (gc.get_objects instance census).
import gc
gc.disable()
gc.collect()

class C:
    pass

class D:
    pass

def census(cls):
    n = 0
    for o in gc.get_objects():
        if type(o) is cls:
            n += 1
    return n

items = [C() for i in range(5)]
d = D()
print("C:", census(C), "D:", census(D))
del items[0:2]
print("after deleting two:", census(C))
loop = C()
loop.me = loop
del loop
print("cyclic instance still counted:", census(C))
gc.collect()
print("after collect:", census(C))
items = None
print("none left:", census(C), "D:", census(D))
