# A freshly built tuple of atoms is tracked, but a collection untracks it since
# it can never be part of a cycle; tuples holding containers stay tracked.
# Original scenario (gc.is_tracked tuple optimization).
import gc
gc.disable()

t = tuple([1, 2, "x"])
print("fresh tuple of atoms:", gc.is_tracked(t))
gc.collect()
print("after collect:", gc.is_tracked(t))
u = tuple([1, []])
gc.collect()
print("tuple with a list after collect:", gc.is_tracked(u))
inner = tuple([1, 2])
v = tuple([inner, "a"])
gc.collect()
print("tuple of atom tuples after collect:", gc.is_tracked(inner), gc.is_tracked(v))
print("empty tuple:", gc.is_tracked(()))
