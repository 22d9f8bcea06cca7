# A WeakMethod also dies when the function is removed from the class, firing
# its callback only once even when the instance dies later.
# Ported from CPython Lib/test/test_weakref.py WeakMethodTestCase
# (test_method_dead, test_callback_when_method_dead).
import gc
import weakref
gc.disable()

class Object:
    def __init__(self, arg):
        self.arg = arg
    def some_method(self):
        return 4

class C(Object):
    def some_method(self):
        return 6

calls = []
def cb(arg):
    calls.append(arg)

o = C(1)
r = weakref.WeakMethod(o.some_method, cb)
print("alive:", r()())
del C.some_method
gc.collect()
print("method dead:", r() is None)
print("calls:", len(calls), calls[0] is r)
print("instance alive, inherited method:", o.some_method())
del o
gc.collect()
print("calls after instance dies:", len(calls))
