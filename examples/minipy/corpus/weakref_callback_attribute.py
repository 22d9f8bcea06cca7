# ref.__callback__ is the callback while the referent lives, None for refs
# without one, None after the referent dies, and it is read-only.
# Ported from CPython Lib/test/test_weakref.py test_callback_attribute,
# test_callback_attribute_after_deletion, test_set_callback_attribute.
import gc
import weakref
gc.disable()

class Object:
    def __init__(self, arg):
        self.arg = arg

calls = []
x = Object(1)
callback = lambda ref: calls.append(ref)
ref1 = weakref.ref(x, callback)
print("callback attribute:", ref1.__callback__ is callback)
ref2 = weakref.ref(x)
print("no callback:", ref2.__callback__ is None)
try:
    ref1.__callback__ = lambda ref: None
except AttributeError as e:
    print("assigning:", e.__class__.__name__)
del x
print("callback ran:", len(calls))
print("after death:", ref1.__callback__ is None)
