# Weak dictionaries whose keys/values are self-cycles keep their entries until
# a collection frees the objects; then len() drops to 0.
# Ported from CPython Lib/test/test_weakref.py check_len_cycles
# (test_weak_keyed_len_cycles, test_weak_valued_len_cycles).
import gc
import weakref
gc.disable()
gc.collect()

class RefCycle:
    def __init__(self):
        self.cycle = self

N = 20
items = [RefCycle() for i in range(N)]
wkd = weakref.WeakKeyDictionary()
wvd = weakref.WeakValueDictionary()
for i in range(N):
    wkd[items[i]] = i
    wvd[i] = items[i]
del items
print("before collect:", len(wkd), len(wvd))
print("collected at least N:", gc.collect() >= N)
print("after collect:", len(wkd), len(wvd))
