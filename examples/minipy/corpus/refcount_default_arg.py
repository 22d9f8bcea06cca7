# A default argument value lives as long as the function object; lambdas and
# functions drop it when they are deleted.
# Original scenario (refcount through function defaults).
import gc
gc.disable()

class C:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        print("del", self.name)

def f(x=C("default")):
    return x.name

print("call:", f())
print("override:", f(C("argument")))
g = lambda y=C("lambda-default"): y.name
print("lambda:", g())
del f
print("f deleted")
g = None
print("g dropped")
