# A finalizer that puts self into a container passed in from outside
# resurrects it; the container keeps it alive until cleared, and it is then
# freed without another __del__.
# Original scenario (resurrection into a list and a dict).
import gc
gc.disable()

bucket = []
registry = {}

class Item:
    def __init__(self, name, target):
        self.name = name
        self.target = target
    def __del__(self):
        print("__del__", self.name)
        if isinstance(self.target, list):
            self.target.append(self)
        else:
            self.target[self.name] = self

Item("to-list", bucket)
Item("to-dict", registry)
print("bucket:", [i.name for i in bucket], "registry:", sorted(registry.keys()))
bucket.clear()
print("bucket cleared")
registry.clear()
print("registry cleared")
print("end")
