# An instance stored as a class attribute, which in turn refers back to the
# class, forms a cycle via the type; dropping the class frees both on collect.
# Original scenario (cycles through class attributes).
import gc
import weakref
gc.disable()
gc.collect()

log = []

class Registry:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        log.append("del " + self.name)

Registry.default = Registry("default")
Registry.default.cls = Registry
wr = weakref.ref(Registry)
print("default is instance:", isinstance(Registry.default, Registry))
del Registry
print("class alive before collect:", wr() is not None, log)
gc.collect()
print("after collect:", log, "class dead:", wr() is None)
