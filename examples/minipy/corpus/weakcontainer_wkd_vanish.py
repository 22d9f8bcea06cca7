# WeakKeyDictionary associates data with objects without keeping them alive;
# an entry vanishes with its key and its value is released then.
# Original scenario (WeakKeyDictionary).
import gc
import weakref
gc.disable()

class Key:
    def __init__(self, name):
        self.name = name

class Value:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        print("value released:", self.name)

extra = weakref.WeakKeyDictionary()
k1 = Key("k1")
k2 = Key("k2")
extra[k1] = Value("v1")
extra[k2] = Value("v2")
print("len:", len(extra), k1 in extra, extra[k2].name)
del k1
print("after del k1:", len(extra), [k.name for k in extra.keys()])
extra[k2] = Value("v2b")
print("replaced value")
k2 = None
print("len:", len(extra))
