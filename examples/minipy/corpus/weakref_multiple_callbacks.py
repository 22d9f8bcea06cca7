# Several weakrefs with callbacks on one object: all are invalidated and every
# callback runs once, the most recently created reference first.
# Ported from CPython Lib/test/test_weakref.py test_multiple_callbacks.
import gc
import weakref
gc.disable()

class C:
    pass

order = []

def make_cb(name):
    def cb(ref):
        order.append(name)
        print(name, "sees ref1 dead:", ref1() is None, "ref2 dead:", ref2() is None)
    return cb

o = C()
ref1 = weakref.ref(o, make_cb("first"))
ref2 = weakref.ref(o, make_cb("second"))
ref3 = weakref.ref(o, make_cb("third"))
del o
print("order:", order)
print("all dead:", ref1() is None and ref2() is None and ref3() is None)
