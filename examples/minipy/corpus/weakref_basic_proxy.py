# Attribute reads, writes and deletes through a proxy act on the referent,
# and vice versa; after the referent dies the proxy raises ReferenceError.
# Ported from CPython Lib/test/test_weakref.py test_basic_proxy / check_proxy.
import gc
import weakref
gc.disable()

class C:
    pass

o = C()
proxy = weakref.proxy(o)
o.foo = 1
print("read via proxy:", proxy.foo)
o.foo = 2
print("read after change:", proxy.foo)
del o.foo
print("proxy sees deletion:", hasattr(proxy, "foo"))
proxy.foo = 1
print("write via proxy:", o.foo)
proxy.foo = 2
print("second write:", o.foo)
del proxy.foo
print("delete via proxy:", hasattr(o, "foo"))
print("weakref count:", weakref.getweakrefcount(o))
del o
try:
    proxy.foo = 3
except ReferenceError as e:
    print("set on dead proxy:", e.__class__.__name__)
try:
    print(proxy.foo)
except ReferenceError as e:
    print("get on dead proxy:", e.__class__.__name__)
