# weakref.ref(o) without a callback is shared: asking twice gives the same
# object. Refs with callbacks are always new objects.
# Ported from CPython Lib/test/test_weakref.py test_ref_reuse / test_shared_ref_without_callback.
import gc
import weakref
gc.disable()

class C:
    pass

o = C()
ref1 = weakref.ref(o)
ref2 = weakref.ref(o)
print("plain refs shared:", ref1 is ref2)
print("weakref count:", weakref.getweakrefcount(o))
cb = lambda r: None
ref3 = weakref.ref(o, cb)
ref4 = weakref.ref(o, cb)
print("callback refs distinct:", ref3 is not ref4, ref3 is not ref1)
print("weakref count:", weakref.getweakrefcount(o))
del ref1, ref2
print("after dropping plain ref:", weakref.getweakrefcount(o))
ref5 = weakref.ref(o)
print("new plain ref is not a callback ref:", ref5 is not ref3, ref5.__callback__ is None)
print("weakref count:", weakref.getweakrefcount(o))
