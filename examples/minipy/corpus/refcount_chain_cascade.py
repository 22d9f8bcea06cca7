# Releasing the head of a linked chain frees the whole chain in one cascade:
# each node's __del__ runs before the node it points to is released.
# Original scenario (cascading refcount deaths).
import gc
gc.disable()

class Node:
    def __init__(self, name, next):
        self.name = name
        self.next = next
    def __del__(self):
        nxt = "end"
        if self.next is not None:
            nxt = self.next.name
        print("del", self.name, "-> next", nxt)

head = None
for name in ["d", "c", "b", "a"]:
    head = Node(name, head)
middle = head.next.next
print("holding c separately")
head = None
print("head released")
del middle
print("middle released")
