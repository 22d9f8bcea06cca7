import gc

class MyObject:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        print(f"{self.name} has been garbage collected")

obj1 = MyObject("My Object")
obj2 = MyObject("Object")
obj1.ref = obj2
obj2.ref = obj1
del obj1
del obj2
gc.collect()
