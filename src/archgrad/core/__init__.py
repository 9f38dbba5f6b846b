"""The core objects every strategy and space share: architecture parameters and the mixing
weights they give (``arch``), the candidate operations (``ops``, ``bn``, ``costs``), sampling,
and the strategy itself: an estimator (``estimator``) + an update rule (``updates``) + a schedule
(``strategy``), with the parts any strategy takes (``addons``: regularizers, perturbations;
``collapse``: the Hessian eigenvalue and early stopping; ``selection``: DARTS-PT's derivation)
and its typed options (``options``). Nothing here reads files or knows a dataset."""
