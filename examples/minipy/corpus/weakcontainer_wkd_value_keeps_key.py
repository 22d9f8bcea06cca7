# A WeakKeyDictionary value that refers to its own key keeps the key alive
# forever (the dict holds the value strongly); gc.collect() cannot help until
# the entry is removed explicitly.
# Original scenario (WeakKeyDictionary pitfall).
import gc
import weakref
gc.disable()
gc.collect()

class Key:
    pass

class Meta:
    def __init__(self, owner):
        self.owner = owner

d = weakref.WeakKeyDictionary()
k = Key()
wk = weakref.ref(k)
d[k] = Meta(k)
del k
gc.collect()
print("key still alive:", wk() is not None, "len:", len(d))
del d[wk()]
print("entry removed, key dead:", wk() is None, "len:", len(d))

k2 = Key()
wk2 = weakref.ref(k2)
d[k2] = Meta(None)
del k2
print("value not referring to key: key dead:", wk2() is None, "len:", len(d))
