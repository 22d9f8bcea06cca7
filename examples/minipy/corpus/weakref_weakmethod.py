# WeakMethod holds a bound method weakly: calling it re-creates the bound
# method while the instance lives; it dies with the instance and fires the
# callback once.
# Ported from CPython Lib/test/test_weakref.py WeakMethodTestCase
# (test_alive, test_object_dead, test_callback_when_object_dead).
import gc
import weakref
gc.disable()

class Object:
    def __init__(self, arg):
        self.arg = arg
    def some_method(self):
        return 4

o = Object(1)
r = weakref.WeakMethod(o.some_method)
print("is a ref:", isinstance(r, weakref.ref))
m = r()
print("call:", m())
del m
del o
print("dead:", r() is None)

calls = []
def cb(arg):
    calls.append(arg)

o = Object(2)
r = weakref.WeakMethod(o.some_method, cb)
print("alive:", r()())
del o
print("calls:", len(calls), calls[0] is r)
gc.collect()
print("still one call:", len(calls))
