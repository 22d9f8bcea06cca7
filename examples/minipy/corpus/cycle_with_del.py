# A cycle whose members both define __del__ is collected (PEP 442): every
# finalizer runs exactly once, while all attributes are still intact.
# Original scenario (cycle of instances with __del__).
import gc
gc.disable()
gc.collect()

log = []

class Node:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        log.append(self.name + " sees partner " + self.partner.name)

a = Node("a")
b = Node("b")
a.partner = b
b.partner = a
del a, b
print("after del:", log)
print("collected:", gc.collect())
for line in sorted(log):
    print(line)
print("garbage:", gc.garbage)
print("second collect:", gc.collect(), len(log))
