# gc.get_objects(generation=N) reports a tracked object in the generation it
# currently lives in; each collect(N) promotes it by one generation.
# Ported from CPython Lib/test/test_gc.py GCTests.test_get_objects.
import gc
gc.disable()
gc.collect()

l = []
l.append(l)

def where():
    found = []
    for gen in range(3):
        hit = False
        for o in gc.get_objects(generation=gen):
            if o is l:
                hit = True
        found.append(hit)
    return found

print("fresh:", where())
gc.collect(generation=0)
print("after collect(0):", where())
gc.collect(generation=1)
print("after collect(1):", where())
gc.collect(generation=2)
print("after collect(2):", where())
print("all == None:", len(gc.get_objects()) == len(gc.get_objects(generation=None)))
try:
    gc.get_objects(1000)
except ValueError as e:
    print("bad generation:", e.__class__.__name__)
del l
print("collect:", gc.collect())
