# gc.get_referents() lists the objects directly referred to by containers;
# atomic objects have no referents.
# Ported from CPython Lib/test/test_gc.py GCTests.test_get_referents.
import gc

alist = [1, 3, 5]
got = gc.get_referents(alist)
got.sort()
print("list:", got, got == alist)

atuple = tuple(alist)
got = gc.get_referents(atuple)
got.sort()
print("tuple:", got)

adict = {1: 3, 5: 7}
got = gc.get_referents(adict)
got.sort()
print("dict:", got)

got = gc.get_referents([1, 2], {3: 4}, (0, 0, 0))
got.sort()
print("several:", got, got == [0, 0] + list(range(5)))

print("atomic:", gc.get_referents(1, "a", 2.5, None, True))
