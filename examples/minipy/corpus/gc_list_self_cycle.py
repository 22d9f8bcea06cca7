# A list that contains itself is cyclic trash: gc.collect() finds exactly 1 object.
# Ported from CPython Lib/test/test_gc.py GCTests.test_list.
import gc
gc.disable()
gc.collect()

l = []
l.append(l)
print("contains itself:", l[0] is l)
print("collect while alive:", gc.collect())
del l
print("collect after del:", gc.collect())
print("collect again:", gc.collect())
