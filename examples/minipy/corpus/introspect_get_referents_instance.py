# gc.get_referents() of an instance includes its class and its attribute
# values (checked by identity, not by order).
# Original scenario (gc.get_referents on user objects).
import gc

class C:
    pass

def contains(seq, obj):
    for o in seq:
        if o is obj:
            return True
    return False

c = C()
payload = [1, 2]
c.x = payload
label = "text"
c.y = label
r = gc.get_referents(c)
print("class among referents:", contains(r, C))
print("attribute list among referents:", contains(r, payload))
print("attribute str among referents:", contains(r, label))
other = [3]
print("unrelated object among referents:", contains(r, other))
pair = (payload, other)
r2 = gc.get_referents(pair)
print("tuple referents:", len(r2), contains(r2, payload), contains(r2, other))
d = {"k": payload}
r3 = gc.get_referents(d)
print("dict referents include the value:", contains(r3, payload))
