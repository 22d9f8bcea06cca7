# Finalizers whose objects are still alive at exit run at exit when atexit is
# True (the default), newest first; those with atexit = False are skipped.
# Original scenario (weakref.finalize atexit).
import weakref

class Res:
    pass

keep = []

def register(name, at_exit):
    r = Res()
    keep.append(r)
    f = weakref.finalize(r, print, "exit finalizer", name)
    f.atexit = at_exit
    return f

f1 = register("one", True)
f2 = register("two", False)
f3 = register("three", True)
print("atexit flags:", f1.atexit, f2.atexit, f3.atexit)
print("all alive:", f1.alive and f2.alive and f3.alive)
print("end of program")
