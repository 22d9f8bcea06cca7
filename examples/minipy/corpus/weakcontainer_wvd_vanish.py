# WeakValueDictionary entries disappear the moment their value dies; keys,
# membership and get() reflect that; a value held elsewhere survives.
# Original scenario (WeakValueDictionary).
import gc
import weakref
gc.disable()

class Obj:
    def __init__(self, name):
        self.name = name

cache = weakref.WeakValueDictionary()
a = Obj("a")
b = Obj("b")
cache["a"] = a
cache["b"] = b
cache["temp"] = Obj("temp")
print("len:", len(cache), sorted(cache.keys()))
print("get a:", cache.get("a").name, "get temp:", cache.get("temp"))
del a
print("after del a:", sorted(cache.keys()), "a" in cache)
other = b
del b
print("b held elsewhere:", "b" in cache, cache["b"] is other)
other = None
print("len:", len(cache), "default:", cache.get("b", "gone"))
