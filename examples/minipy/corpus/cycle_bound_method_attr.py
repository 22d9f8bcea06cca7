# An instance storing one of its own bound methods (e.g. as a callback) is in
# a cycle; it is finalized only by the collector.
# Original scenario (cycles through bound methods).
import gc
gc.disable()
gc.collect()

class Button:
    def __init__(self, name):
        self.name = name
        self.on_click = self.handle
    def handle(self):
        return "clicked " + self.name
    def __del__(self):
        print("del", self.name)

b = Button("ok")
print(b.on_click())
del b
print("after del")
gc.collect()
print("after collect")

c = Button("cancel")
c.on_click = None
del c
print("no cycle once the method is dropped")
