# finalize passes extra positional and keyword arguments through, including
# keywords named func and obj; peek shows them.
# Ported from CPython Lib/test/test_weakref.py FinalizeTestCase.test_arg_errors.
import gc
import weakref
gc.disable()

class A:
    pass

res = []
def fin(a, b, func, obj):
    res.append((a, b, func, obj))

a = A()
f = weakref.finalize(a, fin, 1, 2, func=3, obj=4)
info = f.peek()
print("peek:", info[0] is a, info[1] is fin, info[2], info[3])
f()
print("res:", res)
try:
    weakref.finalize(a)
except TypeError as e:
    print("missing func:", e.__class__.__name__)
try:
    weakref.finalize()
except TypeError as e:
    print("no arguments:", e.__class__.__name__)
