# The name bound by "except E as e" is deleted at the end of the handler, which
# releases the exception and the objects in its args.
# Original scenario (refcount deaths through exceptions).
import gc
gc.disable()

class C:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        print("del", self.name)

class Payload(Exception):
    pass

def fail():
    raise Payload(C("in-args"))

try:
    fail()
except Payload as e:
    print("caught", e.__class__.__name__, e.args[0].name)
try:
    e
except NameError as ne:
    print("after handler, e is unbound:", ne.__class__.__name__)
try:
    raise ValueError(C("value-error-arg"))
except ValueError as err:
    saved = err
print("saved exception keeps arg:", saved.args[0].name)
saved = None
print("end")
