# Once the referent dies, every use of the proxy raises ReferenceError
# (attribute get/set, method call, len, str); the error is catchable.
# Original scenario (weakref.proxy after death).
import gc
import weakref
gc.disable()

class Thing:
    def __init__(self):
        self.value = 1
    def method(self):
        return "m"
    def __len__(self):
        return 3

t = Thing()
p = weakref.proxy(t)
print("alive:", p.value, p.method(), len(p))
del t
attempts = [
    ("getattr", lambda: p.value),
    ("setattr", lambda: setattr(p, "value", 2)),
    ("method", lambda: p.method()),
    ("len", lambda: len(p)),
    ("str", lambda: str(p)),
]
for name, action in attempts:
    try:
        action()
        print(name, "did not fail")
    except ReferenceError as e:
        print(name, "->", e.__class__.__name__)
