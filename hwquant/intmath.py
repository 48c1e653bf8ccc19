"""Integer helpers shared by the hardware generators and the cost models (pure Python, so the
cost models need no hardware module)."""

__all__ = ["csd_digits"]


def csd_digits(value: int) -> list:
    """Canonical signed-digit form of a positive integer: ``[(shift, digit), ...]``, digits
    ``+1``/``-1``, lowest shift first, ``value == sum(digit << shift)``. No two digits are
    adjacent, so it has the fewest nonzero digits of any signed-binary form (``7 = 8 - 1``):
    a constant multiply as shift-and-add costs one adder less than its digit count."""
    value = int(value)
    if value < 1:
        raise ValueError(f"Signed-digit constant must be a positive integer, not {value!r}")
    digits, shift = [], 0
    while value:
        if value & 1:
            digit = 1 if value & 3 == 1 else -1
            digits.append((shift, digit))
            value -= digit
        value >>= 1
        shift += 1
    return digits
