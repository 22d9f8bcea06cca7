# Registering a bound method of the object itself as the finalize callback
# keeps the object alive (the registry holds the method strongly), so it only
# runs at exit; a plain function with copied data runs at death.
# Original scenario (weakref.finalize pitfall from the docs).
import gc
import weakref
gc.disable()
gc.collect()

class TempDir:
    def __init__(self, name):
        self.name = name
    def remove(self):
        print("removing", self.name)

def remove_name(name):
    print("removing by name", name)

bad = TempDir("bad")
wbad = weakref.ref(bad)
fbad = weakref.finalize(bad, bad.remove)
good = TempDir("good")
fgood = weakref.finalize(good, remove_name, good.name)
del bad, good
gc.collect()
print("bad still alive:", wbad() is not None, fbad.alive)
print("good finalized:", not fgood.alive)
print("end of program")
