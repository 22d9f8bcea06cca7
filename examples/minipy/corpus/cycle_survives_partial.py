# Only the unreachable part of a graph is collected: a cycle that points to a
# live object does not keep that object from living, and a live object that
# points into a cycle keeps the cycle alive.
# Original scenario (reachability during collection).
import gc
import weakref
gc.disable()
gc.collect()

class N:
    pass

live = N()
g1 = N()
g2 = N()
g1.peer = g2
g2.peer = g1
g1.live = live
w1 = weakref.ref(g1)
del g1, g2
print("garbage cycle with pointer to live object:", gc.collect())
print("cycle dead:", w1() is None, "live object fine:", isinstance(live, N))

h1 = N()
h2 = N()
h1.peer = h2
h2.peer = h1
live.into = h1
w2 = weakref.ref(h2)
del h1, h2
print("collect while reachable:", gc.collect(), w2() is not None)
del live.into
print("collect after unlinking:", gc.collect(), w2() is None)
