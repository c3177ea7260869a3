"""Model families p_theta and the default data distributions of the retraining operator (eq 9).

A family (`Family`, in `base`) supplies log p_theta(x), its gradient and Hessian in theta
(given in closed form, derived by sympy, or numerical with an error estimate), the Lipschitz
constant L of Assumption 1 and a quadrature rule for expectations under p_theta. Shipped:

- `GaussianFamily(d)`: theta = (mu, svec(Sigma^-1)), the family of Proposition 2, any d;
- `StudentTFamily(nu)`: 1D location-scale Student-t, theta = (m, s), Hessian not linear in x;
- `LaplaceFamily(loc)`: Laplace scale family, theta = (b,);
- `ExponentialFamily()`, `PoissonFamily()`: rates, theta = (r,);
- `CategoricalFamily(k)`: softmax logits against class 0 (Bernoulli for k = 2);
- `VonMisesFamily()`: theta = (mu, kappa) on the circle;
- `GaussianMixtureFamily(k)`: k components, weights, means and scales all free;
- `MeansMixtureFamily(sigma)`: equal-weight two-means mixture with fixed sigma;
- `ExpressionFamily(formula)`: any normalised 1D log density written as a formula (sympy).

`make_family(spec)` builds one from a ``--family`` string (`spec`), including the
researcher's own classes (`plugins`). `default_settings()` gives the (name, family, data)
triples of the operator checks.
"""

from stability.families.base import Family
from stability.families.categorical import CategoricalFamily
from stability.families.data import GaussianData, GaussianMixture1D
from stability.families.exponential import ExponentialFamily
from stability.families.gaussian import GaussianFamily
from stability.families.gaussian_mixture import GaussianMixtureFamily
from stability.families.laplace import LaplaceFamily
from stability.families.means_mixture import MeansMixtureFamily
from stability.families.poisson import PoissonFamily
from stability.families.quadrature import w1_1d
from stability.families.settings import NEAR_MIXTURE_DATA, SKEWED_DATA, default_settings
from stability.families.spec import family_names, make_family
from stability.families.student_t import StudentTFamily
from stability.families.symbolic import ExpressionFamily, SympyFamily1D
from stability.families.von_mises import VonMisesFamily

__all__ = [
    "CategoricalFamily",
    "ExponentialFamily",
    "ExpressionFamily",
    "Family",
    "GaussianData",
    "GaussianFamily",
    "GaussianMixture1D",
    "GaussianMixtureFamily",
    "LaplaceFamily",
    "MeansMixtureFamily",
    "NEAR_MIXTURE_DATA",
    "PoissonFamily",
    "SKEWED_DATA",
    "StudentTFamily",
    "SympyFamily1D",
    "VonMisesFamily",
    "default_settings",
    "family_names",
    "make_family",
    "w1_1d",
]
