"""Training the student's Transformer to translate English to Japanese.

The modules split along the line between the two halves of the grader:

* **worker-safe** (run inside the sandboxed worker, next to the student's code; they import
  only the standard library, numpy, torch and each other): ``vocab``, ``batching``,
  ``train`` (the trusted training loop and model build), ``decode`` and ``job`` (the grading
  hook, ``job.run``).
* **judge-side** (may use sacrebleu, matplotlib, tqdm, the corpus generator): ``evaluate``
  (BLEU, exact match), ``attention_plot`` (the attention pictures), ``enja`` (the
  small_parallel_enja loader), ``grading`` (the ``translation`` rubric part) and ``cli``
  (``python -m grader train|translate|evaluate``).

This file imports nothing, so that importing ``grader.translation.job`` in the worker pulls
in nothing heavy.
"""
