# A ring where every object resurrects itself: all survive the first collection
# with weakrefs cleared; after release they die without a second __del__.
# Ported from CPython Lib/test/test_finalization.py
# CycleChainFinalizationTest.test_homogenous_resurrect.
import gc
import weakref
gc.disable()
gc.collect()

del_calls = []
survivors = []
errors = []

class Node:
    def __init__(self, name, kind):
        self.name = name
        self.kind = kind
        self.suicided = False
    def check_sanity(self):
        if self.suicided:
            if self.left is not None or self.right is not None:
                errors.append(self.name + ": links not cleared")
            return
        if not self.left.suicided and self.left.right is not self:
            errors.append(self.name + ": bad left link")
        if not self.right.suicided and self.right.left is not self:
            errors.append(self.name + ": bad right link")
    def __del__(self):
        del_calls.append(self.name)
        self.check_sanity()
        if self.kind == "resurrect":
            survivors.append(self)
        elif self.kind == "suicidal":
            self.suicided = True
            self.left = None
            self.right = None

kinds = ["resurrect"] * 3
nodes = [Node("n" + str(i), kinds[i]) for i in range(len(kinds))]
for i in range(len(nodes)):
    nodes[i].left = nodes[i - 1]
    nodes[i - 1].right = nodes[i]
wrs = [weakref.ref(n) for n in nodes]
del nodes
gc.collect()
print("finalized:", sorted(del_calls))
print("survivors:", sorted([s.name for s in survivors]))
print("errors:", errors)
print("weakrefs dead:", [wr() is None for wr in wrs])
survivors.clear()
gc.collect()
print("finalized once each:", sorted(del_calls))
print("garbage:", gc.garbage)
