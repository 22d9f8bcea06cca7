# Storing a bound method on its own instance creates a cycle
# (instance -> bound method -> instance); collection reclaims it and runs __del__.
# Ported from CPython Lib/test/test_gc.py GCTests.test_method.
import gc
gc.disable()
gc.collect()

class A:
    def __init__(self):
        self.init = self.__init__
    def __del__(self):
        print("A.__del__ runs")

a = A()
print("stored bound method:", hasattr(a, "init"))
del a
print("after del (cycle keeps it)")
n = gc.collect()
print("collected something:", n > 0)
print("second collect:", gc.collect())
