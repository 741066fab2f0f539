"""A Gaussian mixture over scalars, fitted by EM from a given start (PAA's anchor split).

PAA (Kim & Lee, 2020) models the losses of one object's candidate anchors as two Gaussians, a
low-loss (positive) and a high-loss (negative) one. mmdetection fits them with
``sklearn.mixture.GaussianMixture`` started from explicit weights, means and precisions; this
is the same expectation-maximisation in numpy, restricted to one feature, so that PAA needs
no scikit-learn. It follows scikit-learn's recipe step for step, so that a fit ends after the
same iteration and at the same parameters (up to float rounding):

- start: the given ``weights_init``, ``means_init`` and ``precisions_init`` (no k-means);
- each iteration: an E-step (responsibilities under the current parameters) whose mean
  log-likelihood is the convergence measure, then an M-step; stop when that measure changes
  by less than ``tol`` (the first iteration never stops: the previous value is -inf) or
  after ``max_iter`` iterations;
- the M-step adds ``10 * eps`` to each component's responsibility mass (so an empty component
  does not divide by zero) and ``reg_covar`` to each variance.

With one feature the 'full', 'diag' and 'spherical' covariance types all mean one variance
per component; 'tied' shares a single variance between the components.
"""
from typing import Sequence, Union

import numpy as np

COVARIANCE_TYPES = ('full', 'tied', 'diag', 'spherical')

ArrayLike = Union[np.ndarray, Sequence[float]]


class GaussianMixture1D:
    """A mixture of ``K`` Gaussians over scalar samples, fitted by EM from a given start.

    Mirrors the parts of ``sklearn.mixture.GaussianMixture`` that PAA uses: ``fit``,
    ``predict`` and ``score_samples``, with all three initial parameters given.

    Args:
        weights_init (array-like): Initial mixing weights [K] (summing to 1).
        means_init (array-like): Initial means, [K] or scikit-learn's [K, 1].
        precisions_init (array-like): Initial precisions (inverse variances) in any of
            scikit-learn's 1-feature layouts: [K, 1, 1] ('full'), [K, 1] ('diag'), [K]
            ('spherical') or [1, 1] ('tied').
        covariance_type (str): 'full', 'tied', 'diag' or 'spherical'. Defaults to 'full'
            (scikit-learn's default).
        tol (float): Convergence threshold on the change of the mean log-likelihood.
            Defaults to 1e-3.
        reg_covar (float): Added to every variance estimate. Defaults to 1e-6.
        max_iter (int): Most EM iterations. Defaults to 100.

    Attributes (after ``fit``):
        weights_ (np.ndarray): Mixing weights [K].
        means_ (np.ndarray): Means [K].
        variances_ (np.ndarray): Variances [K] (equal entries when 'tied').
        n_iter_ (int): EM iterations run.
        converged_ (bool): Whether the ``tol`` criterion stopped the fit.
    """

    def __init__(self,
                 weights_init: ArrayLike,
                 means_init: ArrayLike,
                 precisions_init: ArrayLike,
                 covariance_type: str = 'full',
                 tol: float = 1e-3,
                 reg_covar: float = 1e-6,
                 max_iter: int = 100) -> None:
        self.weights_init = np.asarray(weights_init, dtype=np.float64).reshape(-1)
        self.means_init = np.asarray(means_init, dtype=np.float64).reshape(-1)
        self.precisions_init = np.asarray(precisions_init, dtype=np.float64).reshape(-1)
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter

    @property
    def n_components(self) -> int:
        return len(self.means_init)

    def _check_start(self) -> None:
        # scikit-learn validates these when fitting, not when built; so does this class.
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f'covariance_type must be one of {COVARIANCE_TYPES}, '
                             f'got {self.covariance_type!r}')
        k = self.n_components
        if len(self.weights_init) != k:
            raise ValueError(f'weights_init has {len(self.weights_init)} entries for {k} '
                             'components')
        num_precisions = 1 if self.covariance_type == 'tied' else k
        if len(self.precisions_init) != num_precisions:
            raise ValueError(f'precisions_init has {len(self.precisions_init)} values; '
                             f"covariance_type {self.covariance_type!r} with {k} components "
                             f'needs {num_precisions}')
        if np.any(self.precisions_init <= 0):
            raise ValueError('precisions_init must be positive')

    def fit(self, samples: ArrayLike) -> 'GaussianMixture1D':
        """Run EM on the samples from the initial parameters.

        Args:
            samples (array-like): Scalars [N] (or [N, 1]), N >= K.

        Returns:
            GaussianMixture1D: ``self``, fitted.
        """
        self._check_start()
        x = self._as_samples(samples)
        if len(x) < max(self.n_components, 2):
            raise ValueError(f'need at least max(2, n_components={self.n_components}) samples, '
                             f'got {len(x)}')
        self.weights_ = self.weights_init.copy()
        self.means_ = self.means_init.copy()
        self.variances_ = np.broadcast_to(1.0 / self.precisions_init,
                                          (self.n_components, )).copy()
        mean_log_likelihood = -np.inf
        self.converged_ = False
        self.n_iter_ = 0
        for n_iter in range(1, self.max_iter + 1):
            self.n_iter_ = n_iter
            previous = mean_log_likelihood
            log_resp, log_likelihood = self._e_step(x)
            self._m_step(x, np.exp(log_resp))
            mean_log_likelihood = log_likelihood.mean()
            if abs(mean_log_likelihood - previous) < self.tol:
                self.converged_ = True
                break
        return self

    def predict(self, samples: ArrayLike) -> np.ndarray:
        """Index [N] (int64) of the most probable component of each sample."""
        return self._weighted_log_prob(self._as_samples(samples)).argmax(axis=1)

    def score_samples(self, samples: ArrayLike) -> np.ndarray:
        """Log of the mixture density at each sample [N]."""
        return _logsumexp(self._weighted_log_prob(self._as_samples(samples)))

    @staticmethod
    def _as_samples(samples: ArrayLike) -> np.ndarray:
        return np.asarray(samples, dtype=np.float64).reshape(-1)

    def _weighted_log_prob(self, x: np.ndarray) -> np.ndarray:
        """``log(w_k) + log N(x_i | mu_k, var_k)`` [N, K]."""
        sq_dist = (x[:, None] - self.means_[None, :])**2  # [N, K]
        log_gauss = -0.5 * (np.log(2 * np.pi * self.variances_) + sq_dist / self.variances_)
        return log_gauss + np.log(self.weights_)

    def _e_step(self, x: np.ndarray):
        """Log responsibilities [N, K] and the log-likelihood of each sample [N]."""
        weighted = self._weighted_log_prob(x)
        log_likelihood = _logsumexp(weighted)
        return weighted - log_likelihood[:, None], log_likelihood

    def _m_step(self, x: np.ndarray, resp: np.ndarray) -> None:
        """Weights, means and variances maximising the expected log-likelihood."""
        mass = resp.sum(axis=0) + 10 * np.finfo(resp.dtype).eps  # [K]
        self.weights_ = mass / mass.sum()
        self.means_ = resp.T @ x / mass
        # sum_i r_ik (x_i - mu_k)^2, per component [K]
        spread = (resp * (x[:, None] - self.means_[None, :])**2).sum(axis=0)
        if self.covariance_type == 'tied':
            self.variances_ = np.full(self.n_components, spread.sum() / mass.sum())
        else:
            self.variances_ = spread / mass
        self.variances_ = self.variances_ + self.reg_covar


def _logsumexp(values: np.ndarray) -> np.ndarray:
    """``log(sum_k exp(values[:, k]))`` [N], without overflow."""
    top = values.max(axis=1)
    return top + np.log(np.exp(values - top[:, None]).sum(axis=1))
