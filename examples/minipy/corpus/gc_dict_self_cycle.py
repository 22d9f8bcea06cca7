# A dict that contains itself as a value is cyclic trash: collect() returns 1.
# Ported from CPython Lib/test/test_gc.py GCTests.test_dict.
import gc
gc.disable()
gc.collect()

d = {}
d[1] = d
print("self value:", d[1] is d)
print("collect while alive:", gc.collect())
del d
print("collect after del:", gc.collect())
print("collect again:", gc.collect())
