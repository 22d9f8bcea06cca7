# A returned object outlives its function's frame; an ignored return value dies
# at the end of the call statement; a value returned through several frames
# dies only when the final holder lets go.
# Original scenario (refcount of return values).
import gc
gc.disable()

class C:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        print("del", self.name)

def make(name):
    return C(name)

def relay(name):
    inner = make(name)
    print("relay holds", inner.name)
    return inner

make("ignored")
print("after ignored call")
r = relay("kept")
print("caller holds", r.name)
r = relay("replacement")
print("rebound")
print("len of name:", len(make("inline").name))
r = None
print("end")
