# A long chain kept alive only through WeakKeyDictionary values is torn down
# in one cascade when the root dies; callbacks that look at their own dying
# object never see a half-dead object.
# Ported from CPython Lib/test/test_weakref.py test_trashcan_16602.
import gc
import weakref
gc.disable()

seen = []

class C:
    def __init__(self, parent):
        if not parent:
            return
        wself = weakref.ref(self)
        def cb(wparent):
            o = wself()
            seen.append(o is None or isinstance(o, C))
        self.wparent = weakref.ref(parent, cb)

d = weakref.WeakKeyDictionary()
root = c = C(None)
for n in range(100):
    child = C(c)
    d[c] = child
    c = child
del child
print("entries:", len(d))
c = None
print("entries after dropping the tail name:", len(d))
del root
gc.collect()
print("entries after root dies:", len(d))
print("callbacks:", len(seen), "saw sane objects:", seen.count(True) == len(seen))
