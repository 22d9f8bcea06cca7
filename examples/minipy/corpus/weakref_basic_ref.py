# A weak reference returns its referent while it lives and None afterwards;
# works for instances, functions and bound methods.
# Ported from CPython Lib/test/test_weakref.py ReferencesTestCase.test_basic_ref.
import gc
import weakref
gc.disable()

class C:
    def method(self):
        return "m"

def create_function():
    def f():
        pass
    return f

def create_bound_method():
    return C().method

for name, factory in [("C", C), ("function", create_function), ("bound_method", create_bound_method)]:
    o = factory()
    ref = weakref.ref(o)
    print(name, "alive:", ref() is o)
    print(name, "refcount of refs:", weakref.getweakrefcount(o))
    del o
    print(name, "dead:", ref() is None)
    print(name, "still dead:", ref() is None)
