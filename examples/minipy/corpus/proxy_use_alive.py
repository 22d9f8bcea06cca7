# A proxy forwards attribute access, method calls, len(), ==, str() and
# in to the live referent without keeping it alive.
# Original scenario (weakref.proxy while alive).
import gc
import weakref
gc.disable()

class Stack:
    def __init__(self, name):
        self.name = name
        self.items = []
    def push(self, x):
        self.items.append(x)
        return len(self.items)
    def __len__(self):
        return len(self.items)
    def __str__(self):
        return "Stack" + str(self.items)
    def __eq__(self, other):
        return isinstance(other, Stack) and self.items == other.items
    def __del__(self):
        print("freed", self.name)

s = Stack("s")
p = weakref.proxy(s)
print("push via proxy:", p.push(1), p.push(2))
print("len:", len(p))
print("str:", str(p))
print("items attr:", p.items)
other = Stack("other")
other.items = [1, 2]
print("eq:", p == other)
other = None
print("proxy is not the object:", p is not s)
del s
print("end")
