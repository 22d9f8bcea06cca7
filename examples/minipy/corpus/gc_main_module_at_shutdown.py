# A reference cycle still reachable from __main__ globals when the program ends
# is collected at interpreter shutdown, so its __del__ runs.
# Ported from CPython Lib/test/test_gc.py GCTests.test_gc_main_module_at_shutdown.
class C:
    def __del__(self):
        print('__del__ called')

l = [C()]
l.append(l)
print("end of program")
