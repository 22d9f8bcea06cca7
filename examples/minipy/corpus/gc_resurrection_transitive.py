# Resurrecting one object of a cycle resurrects everything it reaches; the
# other member's attributes are intact afterwards.
# Ported from CPython Lib/test/test_gc.py test_resurrection_is_transitive.
import gc
gc.collect()
gc.disable()

class Cargo:
    def __init__(self):
        self.me = self

class Lazarus:
    resurrected_instances = []
    def __del__(self):
        Lazarus.resurrected_instances.append(self)

laz = Lazarus()
cargo = Cargo()
cargo.tag = "cargo-tag"
laz.cargo = cargo
cargo.laz = laz
del laz, cargo
gc.collect()
print("resurrected:", len(Lazarus.resurrected_instances))
instance = Lazarus.resurrected_instances.pop()
print("has cargo:", hasattr(instance, "cargo"))
print("cargo intact:", instance.cargo.tag, instance.cargo.me is instance.cargo)
print("back link:", instance.cargo.laz is instance)
del instance
print("collect:", gc.collect())
gc.enable()
