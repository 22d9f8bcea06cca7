# An instance whose list attribute contains the instance itself is a cycle
# (instance -> list -> instance); collect() counts the instance and the list.
# Original scenario (instance/list cycles).
import gc
gc.disable()
gc.collect()

class Bag:
    def __init__(self):
        self.items = []
        self.items.append(self)
        self.items.append("text")

b = Bag()
print("collect while alive:", gc.collect())
del b
print("collected:", gc.collect())
bags = [Bag() for i in range(5)]
del bags
print("five bags:", gc.collect())
