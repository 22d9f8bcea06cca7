# Atomic built-in objects are not tracked by the collector; user-defined
# objects, classes and mutable containers are.
# Ported from CPython Lib/test/test_gc.py GCTests.test_is_tracked.
import gc

class UserClass:
    pass

class UserError(Exception):
    pass

print("None:", gc.is_tracked(None))
print("int:", gc.is_tracked(1))
print("float:", gc.is_tracked(1.0))
print("bool:", gc.is_tracked(True), gc.is_tracked(False))
print("str:", gc.is_tracked("a"))
print("class:", gc.is_tracked(UserClass))
print("instance:", gc.is_tracked(UserClass()))
print("exception instance:", gc.is_tracked(UserError("x")))
print("list:", gc.is_tracked([]))
print("set:", gc.is_tracked(set()))
print("module gc:", gc.is_tracked(gc))
print("function:", gc.is_tracked(lambda: 0))
