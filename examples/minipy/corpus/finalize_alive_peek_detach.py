# weakref.finalize bookkeeping: alive is True until the finalizer runs or is
# detached; peek() shows the registered call without consuming it; detach()
# returns it and disarms the finalizer.
# Original scenario (weakref.finalize alive/peek/detach).
import gc
import weakref
gc.disable()

class Res:
    def __init__(self, name):
        self.name = name

def cleanup(name, mode="normal"):
    print("cleanup", name, mode)

r1 = Res("r1")
f1 = weakref.finalize(r1, cleanup, "r1", mode="fast")
obj, func, args, kwargs = f1.peek()
print("peek:", obj.name, func is cleanup, args, kwargs, f1.alive)
del obj
r2 = Res("r2")
f2 = weakref.finalize(r2, cleanup, "r2")
info = f2.detach()
print("detached:", info[0].name, info[2], f2.alive)
del info
del r2
print("r2 died silently")
del r1
print("f1 alive:", f1.alive, "peek:", f1.peek())
