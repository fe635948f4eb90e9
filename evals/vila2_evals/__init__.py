"""vila2-evals: MMMU and other benchmarks for vila2 models, through lm-eval and VLMEvalKit.

Installing the package registers, through the ``vila2`` entry point (:mod:`vila2_evals.plugin`):

* ``mmmu`` (backend ``builtin``): a local MMMU-schema Parquet file, scored by lm-eval's MMMU parser;
* ``lm-eval`` (backend ``lm-eval``): MMMU or any lm-eval task through ``lm_eval.simple_evaluate``;
* ``vlmeval`` (backend ``vlmeval``): MMMU and image MCQ sets from VLMEvalKit TSV files, in a child
  process (``pip install 'vila2-evals[vlmeval]'``).
"""

__version__ = "0.1.0"
