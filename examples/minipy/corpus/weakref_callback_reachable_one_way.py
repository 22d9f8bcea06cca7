# A weakref callback owned by an object in cyclic trash is cleared along with
# it: neither c1 nor c2 survive and the callback does not run.
# Ported from CPython Lib/test/test_weakref.py test_callback_reachable_one_way
# and test_callback_different_classes.
import gc
import weakref
gc.disable()
gc.collect()

log = []

class C:
    def cb(self, ignore):
        log.append("cb")
        self.me
        self.c1
        self.wr

class D:
    pass

for first in [C, D]:
    c1, c2 = first(), C()
    c2.me = c2
    c2.c1 = c1
    c2.wr = weakref.ref(c1, c2.cb)
    w1 = weakref.ref(c1)
    w2 = weakref.ref(c2)
    del c1, c2
    print("alive before collect:", w1() is not None, w2() is not None)
    print("collected at least the pair:", gc.collect() >= 2)
    print("dead:", w1() is None, w2() is None)
print("log:", log)
