# A for-loop variable keeps the current item alive; each iteration releases the
# previous item (if nothing else holds it) and the last one survives the loop.
# Original scenario (refcount deaths in loops).
import gc
gc.disable()

class C:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        print("del", self.name)

def make(n):
    return C("item" + str(n))

for i in range(3):
    item = make(i)
    print("iteration", i, item.name)
print("loop done, last item alive:", item.name)
del item
print("-- list loop")
items = [C("a"), C("b")]
for x in items:
    print("visit", x.name)
items = None
print("list dropped, x keeps", x.name)
x = None
print("end")
