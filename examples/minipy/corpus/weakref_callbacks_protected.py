# A weakref callback that runs while an exception propagates does not clobber
# that exception.
# Ported from CPython Lib/test/test_weakref.py test_callbacks_protected.
import gc
import weakref
gc.disable()

class BogusError(Exception):
    pass

data = {}
removed = []

def remove(k):
    removed.append(k() is None)
    del data[k]

def encapsulate():
    f = lambda: ()
    data[weakref.ref(f, remove)] = None
    raise BogusError("boom")

for attempt in range(2):
    try:
        encapsulate()
    except BogusError as e:
        print("attempt", attempt, "caught", e.__class__.__name__, e.args)
    else:
        print("exception not properly restored")
print("removed:", removed)
print("data empty:", len(data))
