# A ring of 100 instances is one big cycle; collect() returns 100 and every
# finalizer runs once.
# Original scenario (long cycles).
import gc
gc.disable()
gc.collect()

count = [0]

class Link:
    def __del__(self):
        count[0] += 1

N = 100
first = Link()
cur = first
for i in range(N - 1):
    nxt = Link()
    cur.next = nxt
    cur = nxt
cur.next = first
del first, cur, nxt
print("finalized before collect:", count[0])
print("collected:", gc.collect())
print("finalized:", count[0])
