# Finalizers for several objects run as each object dies; for one object they
# run newest first; calling a finalizer early runs it once and disarms it.
# Original scenario (weakref.finalize call order).
import gc
import weakref
gc.disable()

class Res:
    pass

log = []
a = Res()
b = Res()
weakref.finalize(a, log.append, "a-1")
weakref.finalize(a, log.append, "a-2")
fb = weakref.finalize(b, log.append, "b-1")
weakref.finalize(b, log.append, "b-2")
fb()
print("early call:", log)
del b
print("after b dies:", log)
del a
print("after a dies:", log)
print("fb alive:", fb.alive)
