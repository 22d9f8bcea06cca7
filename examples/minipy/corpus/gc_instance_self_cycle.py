# An instance that refers to itself is collected by gc.collect(); count is 1.
# Ported from CPython Lib/test/test_gc.py GCTests.test_instance / test_newinstance.
import gc
gc.disable()
gc.collect()

class A:
    pass

a = A()
a.a = a
print("collect while alive:", gc.collect())
del a
print("collect after del:", gc.collect())

class B(A):
    pass

b = B()
b.me = b
b.other = A()
del b
print("subclass instance with owned child:", gc.collect())
print("nothing left:", gc.collect())
