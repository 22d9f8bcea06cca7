# Weakref callbacks set *on* a bound method used as a callback: the trash
# weakrefs are cleared silently, but the external weakref to the bound method
# fires once the method is reclaimed.
# Ported from CPython Lib/test/test_weakref.py test_callbacks_on_callback.
import gc
import weakref
gc.disable()
gc.collect()

alist = []

def safe_callback(ignore):
    alist.append("safe_callback called")

class C:
    def cb(self, ignore):
        alist.append("cb called")

c, d = C(), C()
c.other = d
d.other = c
callback = c.cb
c.wr = weakref.ref(d, callback)
d.wr = weakref.ref(callback, d.cb)
external_wr = weakref.ref(callback, safe_callback)
print("external alive:", external_wr() is callback)
del callback, c, d, C
print("after del:", alist)
gc.collect()
print("after collect:", alist)
print("external dead:", external_wr() is None)
alist.clear()
gc.collect()
print("second collect:", alist)
