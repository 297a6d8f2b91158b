"""cloudroi's tests. Helpers are modules of this package: ``tests.upstream``,
``tests.corpus``, ``tests.lambda_runtime_api``, ``tests.reliability.*_support``."""
