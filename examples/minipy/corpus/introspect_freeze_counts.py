# gc.freeze() moves every tracked object into the permanent generation:
# get_freeze_count() covers what get_objects() listed, get_objects() is then
# (nearly) empty, new objects show up again, and unfreeze() empties the permanent gen.
# Original scenario (gc.freeze/unfreeze/get_freeze_count relations).
import gc
gc.disable()
gc.collect()

before = len(gc.get_objects())
gc.freeze()
frozen = gc.get_freeze_count()
print("freeze count covers all objects:", frozen >= before)
print("get_objects after freeze nearly empty:", len(gc.get_objects()) <= 2)
print("count after freeze:", gc.get_count()[1:])
fresh = [[] for i in range(10)]
print("new objects visible:", len(gc.get_objects()) >= 11)
print("freeze count unchanged by allocation:", gc.get_freeze_count() == frozen)
gc.freeze()
print("second freeze adds the new objects:", gc.get_freeze_count() - frozen >= 11)
gc.unfreeze()
print("after unfreeze:", gc.get_freeze_count())
print("objects back:", len(gc.get_objects()) >= before)
