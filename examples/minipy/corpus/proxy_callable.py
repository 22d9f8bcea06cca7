# A proxy to a function can be called while the function lives; afterwards
# the call raises ReferenceError.
# Original scenario (callable proxies, cf. test_weakref test_callable_proxy).
import gc
import weakref
gc.disable()

def make_adder(n):
    def add(x):
        return x + n
    return add

f = make_adder(10)
p = weakref.proxy(f)
print("call via proxy:", p(5))
print("second proxy is shared:", weakref.proxy(f) is p, weakref.proxy(f)(1))
del f
try:
    p(1)
except ReferenceError as e:
    print("dead callable proxy:", e.__class__.__name__)
