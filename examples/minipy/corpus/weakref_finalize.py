# weakref.finalize: calling it runs the function once and returns its result;
# peek/detach expose (obj, func, args, kwargs) until it is dead; it also runs
# when the object dies.
# Ported from CPython Lib/test/test_weakref.py FinalizeTestCase.test_finalize.
import gc
import weakref
gc.disable()

class A:
    def __repr__(self):
        return "<A>"

def add(x, y, z):
    res.append(x + y + z)
    return x + y + z

a = A()
res = []
f = weakref.finalize(a, add, 67, 43, z=89)
print("alive:", f.alive)
print("peek:", f.peek()[0] is a, f.peek()[1] is add, f.peek()[2], f.peek()[3])
print("call:", f())
print("call again:", f(), f())
print("peek/detach when dead:", f.peek(), f.detach())
print("alive:", f.alive, "res:", res)

res = []
f = weakref.finalize(a, add, 67, 43, 89)
print("peek:", f.peek()[2], f.peek()[3])
info = f.detach()
print("detach:", info[0] is a, info[1] is add, info[2], info[3])
print("call after detach:", f(), f.peek(), f.detach(), f.alive, res)

res = []
f = weakref.finalize(a, add, x=67, y=43, z=89)
del a, info
print("after object death:", res, f.alive)
print("call:", f(), f.peek(), f.detach())
