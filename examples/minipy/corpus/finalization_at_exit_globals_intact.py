# At interpreter exit, CPython takes __main__ out of sys.modules and collects before it clears
# any module dict: the module's dict is cyclic (its classes and functions refer back to it), so
# it and everything only it reaches are garbage together, and every __del__ among them (of a
# global self-cycle, of a plain global instance) runs while the globals are still intact.
# Ported from the behaviour Py_FinalizeEx / finalize_modules give (CPython 3.11).
class Tracked:
    dels = 0

    def __init__(self, name):
        self.name = name

    def __del__(self):
        Tracked.dels += 1
        print("del", self.name, "sees Tracked.dels =", Tracked.dels)


cyclic = Tracked("cyclic")
cyclic.me = cyclic
plain = Tracked("plain")
garbage = Tracked("garbage")
garbage.me = garbage
del garbage
print("end of program")
