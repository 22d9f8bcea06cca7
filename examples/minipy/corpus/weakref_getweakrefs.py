# getweakrefs() lists the live weak references to an object; discarded refs
# disappear from the list.
# Ported from CPython Lib/test/test_weakref.py test_getweakrefs.
import gc
import weakref
gc.disable()

class C:
    pass

def callback(r):
    pass

o = C()
ref1 = weakref.ref(o, callback)
ref2 = weakref.ref(o, callback)
del ref1
refs = weakref.getweakrefs(o)
print("only ref2 left:", len(refs), refs[0] is ref2)

o = C()
ref1 = weakref.ref(o, callback)
ref2 = weakref.ref(o, callback)
del ref2
refs = weakref.getweakrefs(o)
print("only ref1 left:", len(refs), refs[0] is ref1)
del refs
del ref1
print("none left:", weakref.getweakrefs(o))
print("int:", weakref.getweakrefs(1))
