# Finalizers still alive at exit run (newest first) if their atexit flag is
# set; a finalizer created during that phase runs next; an exception in one is
# reported on stderr and the rest still run.
# Ported from CPython Lib/test/test_weakref.py FinalizeTestCase.test_atexit.
import weakref

class Anchor:
    pass

_global_var = 'foobar'

def error():
    g1 = weakref.finalize(Anchor, print, 'g1')
    print('f3 error')
    1/0

f1 = weakref.finalize(Anchor, print, 'f1', _global_var)
f2 = weakref.finalize(Anchor, print, 'f2', _global_var)
f3 = weakref.finalize(Anchor, error)
f4 = weakref.finalize(Anchor, print, 'f4', _global_var)
print("defaults:", f1.atexit, f2.atexit, f3.atexit, f4.atexit)
f2.atexit = False
print("f2 opted out:", f2.atexit)
print("end of program")
