# A weakref callback runs exactly once when the referent dies, receiving the
# (now dead) weak reference object itself.
# Ported from CPython Lib/test/test_weakref.py ReferencesTestCase.test_basic_callback.
import gc
import weakref
gc.disable()

class C:
    def __init__(self, name):
        self.name = name

calls = []

def callback(ref):
    calls.append(ref)
    print("callback: ref is dead:", ref() is None)

o = C("x")
wr = weakref.ref(o, callback)
print("alive:", wr().name)
del o
print("calls:", len(calls))
print("callback got the same ref:", calls[0] is wr)
print("ref dead:", wr() is None)
o = C("y")
o = C("z")
print("unrelated rebind, calls:", len(calls))
