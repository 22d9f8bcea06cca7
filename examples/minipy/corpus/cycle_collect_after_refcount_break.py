# Breaking a cycle by hand (deleting one link) lets refcounting free it
# immediately; collect() then has nothing to do.
# Original scenario (manual cycle breaking).
import gc
gc.disable()
gc.collect()

class C:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        print("del", self.name)

a = C("a")
b = C("b")
a.b = b
b.a = a
del b.a
print("link removed")
del b
print("b still held by a")
del a
print("collect:", gc.collect())
l = [C("in-list")]
l.append(l)
l.pop()
del l
print("collect:", gc.collect())
