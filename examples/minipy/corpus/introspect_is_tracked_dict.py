# Dicts holding only atomic keys and values are not tracked; storing a
# container in them starts tracking.
# Original scenario (gc.is_tracked dict optimization).
import gc
gc.disable()

print("empty dict:", gc.is_tracked({}))
print("atomic dict:", gc.is_tracked({"a": 1, "b": "two", 3: None}))
print("dict with list value:", gc.is_tracked({"a": []}))
d = {}
d["x"] = 1
print("after atomic insert:", gc.is_tracked(d))
d["y"] = [1]
print("after container insert:", gc.is_tracked(d))
print("list of atoms:", gc.is_tracked([1, 2]))
print("set:", gc.is_tracked({1, 2}))
print("int, str, float, None:", gc.is_tracked(5), gc.is_tracked("s"), gc.is_tracked(1.5), gc.is_tracked(None))
