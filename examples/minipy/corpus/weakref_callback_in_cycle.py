# An instance holding both a strong and a weak reference (with a bound-method
# callback) to a class, all in cyclic trash: collection is safe and the
# callback, being part of the trash, does not run.
# Ported from CPython Lib/test/test_weakref.py test_callback_in_cycle.
import gc
import weakref
gc.disable()
gc.collect()

log = []

class J:
    pass

class II:
    def acallback(self, ignore):
        log.append("acallback")
        self.J

I = II()
I.J = J
I.wr = weakref.ref(J, I.acallback)
watch = weakref.ref(I)
del I, J, II
print("alive before collect:", watch() is not None)
print("collected something:", gc.collect() > 0)
print("gone:", watch() is None)
print("log:", log)
