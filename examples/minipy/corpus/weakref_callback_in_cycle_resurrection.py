# Weakrefs that are themselves part of cyclic trash are cleared without their
# callbacks running (so they cannot resurrect the cycle); a weakref held from
# outside the trash does get its callback.
# Ported from CPython Lib/test/test_weakref.py test_callback_in_cycle_resurrection.
import gc
import weakref
gc.disable()
gc.collect()

alist = []

class C:
    def __init__(self, value):
        self.attribute = value
    def acallback(self, ignore):
        alist.append(self.c)

c1, c2 = C(1), C(2)
c1.c = c2
c2.c = c1
c1.wr = weakref.ref(c2, c1.acallback)
c2.wr = weakref.ref(c1, c2.acallback)

def C_went_away(ignore):
    alist.append("C went away")

wr = weakref.ref(C, C_went_away)
del c1, c2, C
print("after del:", alist)
gc.collect()
print("after collect:", alist)
print("class ref dead:", wr() is None)
alist.clear()
gc.collect()
print("second collect:", alist)
