# A closure cell keeps a captured object alive after the defining function
# returns; the object dies when the last closure referencing the cell dies,
# and nonlocal rebinding of the cell releases the old value.
# Original scenario (refcount through closures).
import gc
gc.disable()

class C:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        print("del", self.name)

def make():
    obj = C("captured")
    def get():
        return obj.name
    def replace(name):
        nonlocal obj
        obj = C(name)
    return get, replace

get, replace = make()
print("make returned, value:", get())
replace("second")
print("after replace:", get())
del get
print("get deleted, replace still holds the cell")
del replace
print("both closures deleted")
