# Explicit del/popitem/setdefault on weak dictionaries behave like dict.
# Ported from CPython Lib/test/test_weakref.py test_weak_valued_delitem,
# test_weak_keyed_delitem, test_weak_keyed_bad_delitem, check_setdefault.
import gc
import weakref
gc.disable()

class Object:
    def __init__(self, arg):
        self.arg = arg

o1 = Object("1")
o2 = Object("2")
d = weakref.WeakValueDictionary()
d["something"] = o1
d["something else"] = o2
del d["something"]
print("valued:", len(d), list(d.keys()), d["something else"] is o2)

k = weakref.WeakKeyDictionary()
k[o1] = "something"
k[o2] = "something"
del k[o1]
print("keyed:", len(k), list(k.keys())[0] is o2)
try:
    del k[Object("3")]
except KeyError as e:
    print("missing key:", e.__class__.__name__)
try:
    k[13] = 13
except TypeError as e:
    print("int key:", e.__class__.__name__)

v1 = Object("v1")
v2 = Object("v2")
w = weakref.WeakValueDictionary()
print("setdefault new:", w.setdefault("key", v1) is v1)
print("setdefault existing:", w.setdefault("key", v2) is v1)
key, value = w.popitem()
print("popitem:", key, value is v1, len(w))
