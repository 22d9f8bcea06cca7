# A WeakMethod (with or without a callback) does not form a reference cycle
# with itself: dropping it frees it immediately, without gc.
# Ported from CPython Lib/test/test_weakref.py WeakMethodTestCase.test_no_cycles.
import gc
import weakref
gc.disable()

class Object:
    def some_method(self):
        return 4

o = Object()
def cb(_):
    pass

r = weakref.WeakMethod(o.some_method, cb)
wr = weakref.ref(r)
del r
print("WeakMethod freed by refcount:", wr() is None)

m = weakref.WeakMethod(o.some_method)
print("callback-less WeakMethod alive:", m()())
wr = weakref.ref(m)
del m
print("also freed by refcount:", wr() is None)
print("object still alive:", o.some_method())
