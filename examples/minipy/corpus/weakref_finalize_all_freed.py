# Once a finalizer has run, both the finalizer object and its callback are
# released (nothing is leaked through the finalize registry).
# Ported from CPython Lib/test/test_weakref.py FinalizeTestCase.test_all_freed.
import gc
import weakref
gc.disable()

class MyFinalizer(weakref.finalize):
    pass

class A:
    pass

a = A()
res = []
def callback():
    res.append(123)

f = MyFinalizer(a, callback)
wr_callback = weakref.ref(callback)
wr_f = weakref.ref(f)
del callback, f
print("kept alive by registry:", wr_callback() is not None, wr_f() is not None)
del a
print("callback freed:", wr_callback() is None)
print("finalizer freed:", wr_f() is None)
print("res:", res)
