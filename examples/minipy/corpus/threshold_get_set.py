# set_threshold() with one, two or three values changes only those
# generations; get_threshold() reports the current triple.
# Original scenario (gc.set_threshold/get_threshold).
import gc

old = gc.get_threshold()
print("triple:", len(old))
gc.set_threshold(100, 5, 3)
print("all three:", gc.get_threshold())
gc.set_threshold(50)
print("only first:", gc.get_threshold())
gc.set_threshold(70, 8)
print("first two:", gc.get_threshold())
gc.set_threshold(old[0], old[1], old[2])
print("restored:", gc.get_threshold() == old)
