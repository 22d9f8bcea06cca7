# A weakref callback cannot resurrect its referent (the ref is already dead),
# but it may keep the ref object itself and create new weakrefs to other
# live objects. A weakref discarded right away (expression statement) never
# fires.
# Original scenario (weakref callbacks that resurrect or create new refs).
import gc
import weakref
gc.disable()

class C:
    def __init__(self, name):
        self.name = name

kept_refs = []
new_refs = []
other = C("other")

def callback(ref):
    print("callback: referent", ref())
    kept_refs.append(ref)
    new_refs.append(weakref.ref(other, lambda r: print("other's callback")))

victim = C("victim")
weakref.ref(victim, callback)
r = weakref.ref(victim, callback)
print("refs to victim:", weakref.getweakrefcount(victim))
del victim
print("kept ref still dead:", kept_refs[0] is r, kept_refs[0]() is None)
print("new refs to other:", len(new_refs), new_refs[0]() is other)
print("weakref count of other:", weakref.getweakrefcount(other))
del other
print("end")
