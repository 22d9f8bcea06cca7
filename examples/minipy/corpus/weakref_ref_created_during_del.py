# A weakref created to self inside __del__ is valid during __del__ and dead
# afterwards (no dangling reference).
# Ported from CPython Lib/test/test_weakref.py test_ref_created_during_del.
import gc
import weakref
gc.disable()

ref_from_del = None

class Target:
    def __del__(self):
        global ref_from_del
        ref_from_del = weakref.ref(self)
        print("in __del__, ref alive:", ref_from_del() is self)

w = Target()
del w
print("after del, ref dead:", ref_from_del() is None)

w = Target()
w.me = w
del w
gc.collect()
print("cyclic case, ref dead:", ref_from_del() is None)
