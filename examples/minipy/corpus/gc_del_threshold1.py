# __del__ methods may trigger automatic collection (threshold 1, gc enabled);
# deallocation must still complete normally.
# Ported from CPython Lib/test/test_gc.py GCTests.test_del / test_del_newclass.
import gc
gc.collect()
thresholds = gc.get_threshold()
gc.enable()
gc.set_threshold(1)
print("threshold0:", gc.get_threshold()[0])

log = []

class A:
    def __del__(self):
        junk = [[i] for i in range(20)]
        log.append(len(junk))

a = A()
del a
print("deleted:", log)
for i in range(5):
    b = A()
    b.me = b
    del b
gc.collect()
print("total finalized:", len(log))
gc.disable()
gc.set_threshold(thresholds[0], thresholds[1], thresholds[2])
print("restored:", gc.get_threshold() == thresholds)
