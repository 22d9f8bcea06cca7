# A global self-cycle with __del__ is still finalized when the program exits
# via raise SystemExit(0).
# Ported from CPython Lib/test/test_gc.py GCTests.test_global_del_SystemExit.
class ClassWithDel:
    def __del__(self):
        print('__del__ called')

a = ClassWithDel()
a.link = a
print("raising SystemExit")
raise SystemExit(0)
