# A resurrecting finalizer does not stop other garbage from being collected,
# and resurrected objects are not counted as collected.
# Ported from CPython Lib/test/test_gc.py
# test_resurrection_does_not_block_cleanup_of_other_objects.
import gc

N = 100

class A:
    def __init__(self):
        self.me = self

class Z(A):
    def __del__(self):
        zs.append(self)

zs = []
gc.collect()
gc.disable()
for i in range(N):
    A()
print("plain self-cycles:", gc.collect())
Z()
print("only a resurrector:", gc.collect())
for i in range(N):
    A()
Z()
print("mixed:", gc.collect())
print("survivors:", len(zs))
zs.clear()
print("after clearing survivors:", gc.collect())
gc.enable()
