"""Task, caption and text data in the formats the pipeline reads, whatever their source.

``schema`` (ScienceQA and WikiText features, subjects and context types), ``sources`` (real sources: ScienceQA
parquet, LLaVA JSON, WikiText, LLaVA caption JSON), ``render`` (conversation formats: QCM-LEA for training, an
answer-only prompt for evaluation), ``prepare`` (Arrow/parquet shards with images inside and a manifest),
``expectations`` and ``validate`` (the Great Expectations suites). The embedded default's synthetic world is
a package of its own, :mod:`qslaw.embedded.world`.
"""
