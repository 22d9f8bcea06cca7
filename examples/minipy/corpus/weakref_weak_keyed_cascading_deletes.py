# Deleting WeakKeyDictionary entries while __eq__ drops the last strong
# reference to another key: the implicit removal and explicit deletes mix safely.
# Ported from CPython Lib/test/test_weakref.py test_weak_keyed_cascading_deletes.
import gc
import weakref
gc.disable()

d = weakref.WeakKeyDictionary()
mutate = False

class C:
    def __init__(self, i):
        self.value = i
    def __hash__(self):
        return hash(self.value)
    def __eq__(self, other):
        if mutate:
            del objs[-1]
        return self.value == other.value

objs = [C(i) for i in range(4)]
for o in objs:
    d[o] = o.value
del o
objs = list(d.keys())
objs.reverse()
print("keys:", [k.value for k in objs])
mutate = True
count = 0
for o in objs:
    count += 1
    del d[o]
del o
print("len:", len(d))
print("explicit deletes:", count)
