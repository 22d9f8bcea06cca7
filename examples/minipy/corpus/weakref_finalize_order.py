# Finalizers keep themselves alive, run once, and on object death run in
# reverse order of creation; detached ones never run.
# Ported from CPython Lib/test/test_weakref.py FinalizeTestCase.test_order.
import gc
import weakref
gc.disable()

class A:
    pass

a = A()
res = []
f1 = weakref.finalize(a, res.append, 'f1')
f2 = weakref.finalize(a, res.append, 'f2')
f3 = weakref.finalize(a, res.append, 'f3')
f4 = weakref.finalize(a, res.append, 'f4')
f5 = weakref.finalize(a, res.append, 'f5')
del f1, f4
print("alive:", f2.alive, f3.alive, f5.alive)
print("detach returned info:", f5.detach() is not None)
print("f5 alive:", f5.alive)
f5()
res.append('A')
f3()
print("f3 alive:", f3.alive)
res.append('B')
f3()
res.append('C')
del a
print("f2 alive:", f2.alive)
res.append('D')
f2()
print(res)
print("expected:", res == ['A', 'f3', 'B', 'C', 'f4', 'f2', 'f1', 'D'])
