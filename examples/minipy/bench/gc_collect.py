# pyperformance's gc_collect: many garbage cycles of 21 linked nodes, collected explicitly.
import gc

CYCLES = 100
LINKS = 20


class Node:
    def __init__(self):
        self.next = None
        self.prev = None

    def link_next(self, next):
        self.next = next
        self.next.prev = self


def create_cycle(node, n_links):
    current = node
    for i in range(n_links):
        next_node = Node()
        current.link_next(next_node)
        current = next_node
    current.link_next(node)


def create_gc_cycles(n_cycles, n_links):
    cycles = []
    for _ in range(n_cycles):
        node = Node()
        cycles.append(node)
        create_cycle(node, n_links)
    return cycles


def benchmark(loops):
    total = 0
    for _ in range(loops):
        cycles = create_gc_cycles(CYCLES, LINKS)
        del cycles
        total += gc.collect()
    return total


gc.disable()
print(benchmark(300))
