# Object churn: short-lived instances with attribute dicts, method calls, lists and dicts of
# them, some with __del__, some in cycles; automatic collection runs as in any program.
class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y

    def add(self, other):
        return Point(self.x + other.x, self.y + other.y)


class Tracked:
    dels = 0

    def __init__(self, owner):
        self.owner = owner

    def __del__(self):
        Tracked.dels += 1


total = 0
for i in range(100000):
    p = Point(i, i + 1)
    q = p.add(Point(1, 2)).add(Point(3, 4))
    d = {"p": p, "q": q, "items": [p, q, Point(0, 0)]}
    total += d["q"].x - d["p"].y
    if i % 10 == 0:
        t = Tracked(None)
        t.owner = t
print(total, Tracked.dels >= 0)
