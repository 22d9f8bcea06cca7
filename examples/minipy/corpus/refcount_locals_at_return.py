# When a function returns, its locals are released in order (parameters first,
# then locals in order of first assignment); the returned object survives.
# Original scenario (refcount deaths at function return).
import gc
gc.disable()

class C:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        print("del", self.name)

def f(param):
    b = C("b")
    a = C("a")
    keep = C("returned")
    c = C("c")
    print("returning")
    return keep

r = f(C("param"))
print("got", r.name)
del r
print("after del r")

def g():
    x = C("x")
    x = C("x2")
    print("g returns")

g()
print("after g")
