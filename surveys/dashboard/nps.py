"""The NPS maths of SPEC §2, as pure functions over counts.

NPS = %promoters − %detractors, shown as an integer rounded half away from
zero. The 95% margin of error is 1.96·sqrt((p + d − (p − d)²)/n)·100; small
samples use the adjusted-Wald interval (n′ = n + 3, p′ = (P + ¾)/n′,
d′ = (D + ¾)/n′). Two periods differ significantly when
|NPS₁ − NPS₂| / sqrt(SE₁² + SE₂²) > 1.96.
"""

import math
from dataclasses import dataclass
from fractions import Fraction

Z_95 = 1.96


def round_half_away_from_zero(value: Fraction | float) -> int:
    value = Fraction(value)
    magnitude = math.floor(abs(value) + Fraction(1, 2))
    return magnitude if value >= 0 else -magnitude


def _spread(p: float, d: float) -> float:
    # Variance of one answer scored +1 / 0 / −1; never negative but for float noise.
    return max(p + d - (p - d) ** 2, 0.0)


@dataclass(frozen=True)
class NpsFigures:
    responses: int
    promoters: int
    passives: int
    detractors: int
    min_responses: int = 30

    @property
    def has_data(self) -> bool:
        return self.responses > 0

    @property
    def is_small_sample(self) -> bool:
        return 0 < self.responses < self.min_responses

    def share(self, count: int) -> float | None:
        return 100 * count / self.responses if self.responses else None

    @property
    def promoter_share(self) -> float | None:
        return self.share(self.promoters)

    @property
    def passive_share(self) -> float | None:
        return self.share(self.passives)

    @property
    def detractor_share(self) -> float | None:
        return self.share(self.detractors)

    @property
    def exact(self) -> Fraction | None:
        """The unrounded NPS, exactly."""
        if not self.responses:
            return None
        return Fraction(100 * (self.promoters - self.detractors), self.responses)

    @property
    def score(self) -> int | None:
        exact = self.exact
        return None if exact is None else round_half_away_from_zero(exact)

    @property
    def standard_error(self) -> float | None:
        """In NPS points (×100)."""
        if not self.responses:
            return None
        p, d = self.promoters / self.responses, self.detractors / self.responses
        return math.sqrt(_spread(p, d) / self.responses) * 100

    @property
    def margin_of_error(self) -> float | None:
        se = self.standard_error
        return None if se is None else Z_95 * se

    @property
    def interval(self) -> tuple[float, float] | None:
        """95% interval in NPS points, clipped to −100…100; adjusted-Wald for small samples."""
        if not self.responses:
            return None
        if self.is_small_sample:
            n = self.responses + 3
            p, d = (self.promoters + 0.75) / n, (self.detractors + 0.75) / n
            centre = (p - d) * 100
            half = Z_95 * math.sqrt(_spread(p, d) / n) * 100
        else:
            centre = float(self.exact)
            half = self.margin_of_error
        return max(centre - half, -100.0), min(centre + half, 100.0)


@dataclass(frozen=True)
class Change:
    points: float
    z: float | None
    significant: bool


def change_between(current: NpsFigures, previous: NpsFigures) -> Change | None:
    """The change from `previous` to `current`, and whether it is statistically significant."""
    if not current.has_data or not previous.has_data:
        return None
    points = float(current.exact - previous.exact)
    spread = math.sqrt(current.standard_error**2 + previous.standard_error**2)
    if spread == 0:
        return Change(points=points, z=None, significant=points != 0)
    z = abs(points) / spread
    return Change(points=points, z=z, significant=z > Z_95)
