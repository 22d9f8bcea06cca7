# Proxies let a child point back to its parent without a cycle; with proxies
# the tree is freed by refcounting alone (collect() finds nothing).
# Original scenario (breaking parent/child cycles with proxies).
import gc
import weakref
gc.disable()
gc.collect()

class Node:
    def __init__(self, name, parent=None):
        self.name = name
        self.children = []
        if parent is not None:
            self.parent = weakref.proxy(parent)
            parent.children.append(self)
    def path(self):
        if hasattr(self, "parent"):
            return self.parent.path() + "/" + self.name
        return self.name
    def __del__(self):
        print("freed", self.name)

root = Node("root")
child = Node("child", root)
leaf = Node("leaf", child)
print(leaf.path())
del child, leaf
print("tree held by root only")
del root
print("collect:", gc.collect())
