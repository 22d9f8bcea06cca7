# Weak containers that are themselves part of garbage cycles (and hold their
# cycle-mates weakly) are collected together with them without errors.
# Original scenario (weak containers inside cycles).
import gc
import weakref
gc.disable()
gc.collect()

class Node:
    def __init__(self, name):
        self.name = name
        self.peers = weakref.WeakValueDictionary()
        self.tags = weakref.WeakKeyDictionary()
        self.seen = weakref.WeakSet()

a = Node("a")
b = Node("b")
a.strong = b
b.strong = a
a.peers["b"] = b
b.tags[a] = "tag"
a.seen.add(a)
wa = weakref.ref(a)
print("entries:", len(a.peers), len(b.tags), len(a.seen))
del a, b
print("alive before collect:", wa() is not None)
gc.collect()
print("dead after collect:", wa() is None)
print("second collect:", gc.collect())
