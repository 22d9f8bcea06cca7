# A function that refers to itself through its closure cell forms a cycle
# (function -> cell -> function); an object captured by it dies only at
# collection time.
# Original scenario (cycles through closures).
import gc
gc.disable()
gc.collect()

class C:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        print("del", self.name)

def make():
    payload = C("captured")
    def rec(n):
        if n == 0:
            return payload.name
        return rec(n - 1)
    return rec

f = make()
print("call:", f(3))
del f
print("after del (cycle keeps it)")
print("collected something:", gc.collect() > 0)
print("second collect:", gc.collect())
