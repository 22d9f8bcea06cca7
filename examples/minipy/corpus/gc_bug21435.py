# A cycle where only one member has __del__ (and __del__ mutates the object)
# is collected safely; the finalizer runs exactly once.
# Ported from CPython Lib/test/test_gc.py GCTests.test_bug21435.
import gc
gc.disable()
gc.collect()

log = []

class A:
    pass

class B:
    def __init__(self, x):
        self.x = x
    def __del__(self):
        log.append("B.__del__ sees partner: " + str(isinstance(self.attr, A)))
        self.attr = None

def do_work():
    a = A()
    b = B(A())
    a.attr = b
    b.attr = a

do_work()
print("after do_work:", log)
gc.collect()
print("after collect:", log)
print("again:", gc.collect(), log)
