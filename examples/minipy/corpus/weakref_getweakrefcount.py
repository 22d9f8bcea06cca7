# getweakrefcount() counts live ref and proxy objects (with or without
# callbacks) pointing at an object; it drops to 0 when they are discarded.
# Ported from CPython Lib/test/test_weakref.py test_getweakrefcount.
import gc
import weakref
gc.disable()

class C:
    pass

def callback(r):
    pass

o = C()
print("none yet:", weakref.getweakrefcount(o))
ref1 = weakref.ref(o)
ref2 = weakref.ref(o, callback)
print("two refs:", weakref.getweakrefcount(o))
proxy1 = weakref.proxy(o)
proxy2 = weakref.proxy(o, callback)
print("plus two proxies:", weakref.getweakrefcount(o))
del ref1, ref2, proxy1, proxy2
print("after discarding:", weakref.getweakrefcount(o))
print("int:", weakref.getweakrefcount(1))
