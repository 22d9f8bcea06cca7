# weakref.proxy(o) without a callback is shared; a proxy and a ref to the same
# object are distinct objects and both counted.
# Ported from CPython Lib/test/test_weakref.py test_proxy_reuse / test_shared_proxy_without_callback.
import gc
import weakref
gc.disable()

class C:
    def __init__(self):
        self.bar = 1

o = C()
proxy1 = weakref.proxy(o)
ref = weakref.ref(o)
proxy2 = weakref.proxy(o)
print("proxies shared:", proxy1 is proxy2)
print("proxy attribute:", proxy1.bar)
print("count:", weakref.getweakrefcount(o))
proxy3 = weakref.proxy(o, lambda p: None)
print("callback proxy distinct:", proxy3 is not proxy1)
print("count:", weakref.getweakrefcount(o))
del o
try:
    proxy1.bar
except ReferenceError as e:
    print("after death:", e.__class__.__name__)
print("ref dead:", ref() is None)
