# Temporaries die as soon as the expression no longer needs them: an
# expression statement's value dies at the end of the statement, a temporary
# whose method is called dies right after the call returns.
# Original scenario (refcount deaths of temporaries).
import gc
gc.disable()

class C:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        print("del", self.name)
    def hello(self):
        print("hello from", self.name)
        return len(self.name)

print("start")
C("expr-statement")
print("after expression statement")
n = C("method-call").hello()
print("result", n)
s = C("attribute").name.upper()
print("attribute value", s)
total = C("left").hello() + C("right").hello()
print("total", total)
