# Classes are weakly referenceable; a callback such as list.append receives the
# dead ref when the class is collected.
# Ported from CPython Lib/test/test_weakref.py test_classes.
import gc
import weakref
gc.disable()
gc.collect()

class A:
    pass

l = []
a = weakref.ref(A, l.append)
print("alive:", a() is A)
A = None
gc.collect()
print("dead:", a() is None)
print("callback got the ref:", len(l), l[0] is a)
