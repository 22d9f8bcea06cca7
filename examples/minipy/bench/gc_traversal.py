# pyperformance's gc_traversal: a live heap of nested lists (about 500,000 references), traversed
# by full collections that find nothing.
import gc

N_LEVELS = 1000


def create_recursive_containers(n_levels):
    current_list = []
    for n in range(n_levels):
        new_list = [None] * n
        for index in range(n):
            new_list[index] = current_list
        current_list = new_list
    return current_list


def benchmark(loops):
    all_cycles = create_recursive_containers(N_LEVELS)
    collected = 0
    for _ in range(loops):
        collected += gc.collect()
    return collected + len(all_cycles)


print(benchmark(100))
