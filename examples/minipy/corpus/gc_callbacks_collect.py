# Every callback in gc.callbacks is called with phase "start" then "stop" for
# one collection, in list order, with an info dict holding generation,
# collected and uncollectable.
# Ported from CPython Lib/test/test_gc.py GCCallbackTests.test_collect.
import gc
gc.disable()
gc.collect()

visit = []

def cb1(phase, info):
    visit.append((1, phase, dict(info)))

def cb2(phase, info):
    visit.append((2, phase, dict(info)))

gc.callbacks.append(cb1)
gc.callbacks.append(cb2)
gc.collect()
gc.callbacks.remove(cb1)
gc.callbacks.remove(cb2)

print("visits:", len(visit))
print("callback ids:", [v[0] for v in visit])
print("phases:", [v[1] for v in visit])
for v in visit:
    info = v[2]
    print(v[0], v[1], sorted(info.keys()), info["generation"])
print("callbacks left:", len(gc.callbacks))
