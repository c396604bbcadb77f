"""A scalar reverse-mode autograd engine in the spirit of micrograd (chapter 2).

Each :class:`Value` stores a number (``data``), the gradient of the final output with respect to it
(``grad``), the values it was computed from (``_prev``) and a closure ``_backward`` that applies the
chain rule for the operation that produced it:

    out = f(a, b)   =>   a.grad += d out / d a * out.grad,   b.grad += d out / d b * out.grad

``backward()`` sorts the graph topologically and calls the closures from the output back to the inputs,
so every node's ``grad`` is complete before it is passed on.  Gradients accumulate (``+=``) because a
value used twice receives one contribution per use.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["Value"]

Number = (int, float)


class Value:
    """A scalar that remembers how it was computed, so that ``backward()`` can differentiate through it."""

    __slots__ = ("data", "grad", "_backward", "_prev", "_op", "label")

    def __init__(self, data: float, _children: Iterable["Value"] = (), _op: str = "", label: str = ""):
        kind = getattr(getattr(data, "dtype", None), "kind", None)   # NumPy scalars and 0-d arrays
        if isinstance(data, bool) or not (isinstance(data, Number) or (kind in ("i", "u", "f")
                                                                       and getattr(data, "ndim", 1) == 0)):
            raise TypeError(f"Value wants a real number, got {type(data).__name__}")
        self.data = float(data)
        self.grad = 0.0
        self._backward = lambda: None
        self._prev = tuple(_children)
        self._op = _op
        self.label = label

    # -- binary operations -------------------------------------------------------------------------
    @staticmethod
    def _wrap(other) -> "Value":
        return other if isinstance(other, Value) else Value(other)

    def __add__(self, other) -> "Value":
        other = self._wrap(other)
        out = Value(self.data + other.data, (self, other), "+")

        def _backward():                    # d(a + b)/da = d(a + b)/db = 1
            self.grad += out.grad
            other.grad += out.grad
        out._backward = _backward
        return out

    def __mul__(self, other) -> "Value":
        other = self._wrap(other)
        out = Value(self.data * other.data, (self, other), "*")

        def _backward():                    # d(ab)/da = b, d(ab)/db = a
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad
        out._backward = _backward
        return out

    def __pow__(self, exponent: float) -> "Value":
        if isinstance(exponent, bool) or not isinstance(exponent, Number):
            raise TypeError(f"only a constant int or float exponent is supported, got {type(exponent).__name__}")
        if self.data == 0 and exponent < 0:
            raise ZeroDivisionError(f"Value(0.0) ** {exponent} divides by zero (a division by a Value that is 0?)")
        out = Value(self.data ** exponent, (self,), f"**{exponent}")

        def _backward():                    # d(a^p)/da = p a^(p-1)
            self.grad += exponent * self.data ** (exponent - 1) * out.grad
        out._backward = _backward
        return out

    def __neg__(self) -> "Value":
        return self * -1.0

    def __sub__(self, other) -> "Value":
        return self + (-self._wrap(other))

    def __truediv__(self, other) -> "Value":
        return self * self._wrap(other) ** -1

    def __radd__(self, other) -> "Value":
        return self + other

    def __rmul__(self, other) -> "Value":
        return self * other

    def __rsub__(self, other) -> "Value":
        return self._wrap(other) - self

    def __rtruediv__(self, other) -> "Value":
        return self._wrap(other) / self

    # -- unary functions ---------------------------------------------------------------------------
    def exp(self) -> "Value":
        try:
            result = math.exp(self.data)
        except OverflowError:                  # "math range error" alone does not say which value
            raise OverflowError(f"exp({self.data}) is larger than the largest float (about 1.8e308)") from None
        out = Value(result, (self,), "exp")

        def _backward():                    # d e^a / da = e^a
            self.grad += out.data * out.grad
        out._backward = _backward
        return out

    def log(self) -> "Value":
        if self.data <= 0:
            raise ValueError(f"log needs a positive input, got {self.data}")
        out = Value(math.log(self.data), (self,), "log")

        def _backward():                    # d log a / da = 1 / a
            self.grad += out.grad / self.data
        out._backward = _backward
        return out

    def tanh(self) -> "Value":
        out = Value(math.tanh(self.data), (self,), "tanh")

        def _backward():                    # d tanh a / da = 1 - tanh(a)^2
            self.grad += (1.0 - out.data**2) * out.grad
        out._backward = _backward
        return out

    def relu(self) -> "Value":
        out = Value(max(self.data, 0.0), (self,), "relu")

        def _backward():                    # 1 where a > 0, else 0
            self.grad += (self.data > 0) * out.grad
        out._backward = _backward
        return out

    def sigmoid(self) -> "Value":
        x = self.data                       # stable for large |x|, like activations.sigmoid
        s = 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
        out = Value(s, (self,), "sigmoid")

        def _backward():                    # d sigma / da = sigma (1 - sigma)
            self.grad += out.data * (1.0 - out.data) * out.grad
        out._backward = _backward
        return out

    # -- reverse-mode differentiation --------------------------------------------------------------
    def topological_order(self) -> list["Value"]:
        """Every node of the graph, each after all the nodes it was computed from."""
        order: list[Value] = []
        visited: set[int] = set()
        stack: list[tuple[Value, bool]] = [(self, False)]
        while stack:                        # iterative depth-first search: deep graphs do not hit
            node, expanded = stack.pop()    # Python's recursion limit
            if expanded:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in node._prev if id(child) not in visited)
        return order

    def backward(self) -> None:
        """Fill ``grad`` of every node with d self / d node (set to zero first, so calling twice is safe)."""
        order = self.topological_order()
        for node in order:
            node.grad = 0.0
        self.grad = 1.0
        for node in reversed(order):
            node._backward()

    def __repr__(self) -> str:
        name = f"{self.label}=" if self.label else ""
        return f"Value({name}{self.data:.6g}, grad={self.grad:.6g})"
