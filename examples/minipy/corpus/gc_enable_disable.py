# gc.enable()/gc.disable()/gc.isenabled() toggle automatic collection; explicit
# gc.collect() still works while disabled.
# Ported from CPython Lib/test/test_gc.py (gc state save/restore in
# GCCallbackTests.setUp/tearDown and support.disable_gc).
import gc

print("initially enabled:", gc.isenabled())
gc.disable()
print("after disable:", gc.isenabled())
gc.disable()
print("disable twice:", gc.isenabled())
l = []
l.append(l)
del l
print("explicit collect while disabled:", gc.collect())
gc.enable()
print("after enable:", gc.isenabled())
gc.enable()
print("enable twice:", gc.isenabled())
gc.disable()
print("final:", gc.isenabled())
