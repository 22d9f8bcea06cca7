# gc.get_referrers() finds the tracked containers that refer to an object:
# lists, dicts and instances holding it, but not unrelated ones.
# Original scenario (gc.get_referrers checked with identity).
import gc
gc.disable()

class Holder:
    pass

def contains(seq, obj):
    for o in seq:
        if o is obj:
            return True
    return False

target = Holder()
l = [target]
d = {"t": target}
h = Holder()
h.t = target
unrelated = [1, 2, 3]
refs = gc.get_referrers(target)
print("list refers:", contains(refs, l))
print("dict refers:", contains(refs, d))
print("holder refers:", contains(refs, h))
print("unrelated list refers:", contains(refs, unrelated))
del refs
l.remove(target)
refs = gc.get_referrers(target)
print("after remove, list refers:", contains(refs, l))
count = 0
for o in refs:
    if o is d or o is h:
        count += 1
print("remaining known referrers:", count)
