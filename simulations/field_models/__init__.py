"""Models from the model-collapse literature, shipped as plugins of `stability simulate model`.

Each is registered as an entry point of group ``stability.models`` (pyproject.toml) and written
exactly as an outside plugin would be: a class whose instances have fit / sample / state
(`stability.plugin_models`), batched over independent runs with numpy.

- ``gaussian`` (`gaussian.Gaussian`): the paper's Gaussian, mean and covariance (eqs 4-5).
- ``gmm`` (`gmm.GaussianMixture`): a Gaussian mixture fitted by EM (Shumailov et al. 2023).
- ``kde`` (`kde.KDE`): a Gaussian kernel density estimate with a bandwidth rule (Kazdan et al.
  2024).
- ``ngram`` (`ngram.NGram`): a categorical or bigram model of tokens by counts (Suresh et al.
  2024).
- ``linear-regression`` (`linear_regression.LinearRegression`): least squares with synthetic
  labels on a fixed design, test error as metric (Gerstgrasser et al. 2024).

Their data sources (group ``stability.data``) live beside them: ``mixture``, ``categorical``,
``markov``, ``linear``.
"""
