# A proxy may carry a callback; it receives the dead proxy, on which any
# access raises ReferenceError.
# Original scenario (weakref.proxy with callback).
import gc
import weakref
gc.disable()

class Obj:
    def __init__(self, name):
        self.name = name

got = []

def on_death(px):
    got.append(px)
    try:
        px.name
    except ReferenceError as e:
        print("callback: proxy is dead:", e.__class__.__name__)

o = Obj("o")
p = weakref.proxy(o, on_death)
print("name via proxy:", p.name)
print("weakref count:", weakref.getweakrefcount(o))
del o
print("callback ran:", len(got))
print("same proxy:", got[0] is p)
