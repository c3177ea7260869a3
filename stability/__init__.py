"""stability: exact mathematics and checks for iterative retraining of generative models.

The core of the toolkit (numpy, scipy and sympy only; it never imports torch): the collapse rate
alpha(n) of Proposition 1, the Gaussian family of Proposition 2, the retraining operator
G_lambda of eqs (2), (3) and (9) with its Jacobian (Lemma E.1), and the checks of every
numbered claim of Bertrand et al., "On the Stability of Iterative Retraining of Generative
Models on their Own Data" (ICLR 2024).
"""

__all__ = ["alpha", "alpha_d_quadrature", "log_alpha", "one_minus_alpha", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # The rates are imported on first use, not with the package: `stability --help` and every
    # command that does not need them start without scipy (PEP 562 module __getattr__).
    if name in __all__[:-1]:
        from stability import rates

        return getattr(rates, name)
    raise AttributeError(f"module 'stability' has no attribute {name!r}")
